"""The device runtime alone vs the toolkit path, interleaved so that a shared machine's load
hits every side alike.

    python benchmarks/runtime_alone.py --rounds 3 --json benchmarks/runtime_alone.json

Exports A0S at 172 px once (random weights), then runs ``rounds`` rounds of the bench
workers in turn, each in a fresh process: ``onnxruntime`` (through ``grw_edge.runtimes``,
torch imported, the path before the runtime existed), ``runtime`` and ``runtime-lean``
(``grw_edge_runtime`` alone, default and lean onnxruntime allocator settings).  Reports the
median over rounds of each figure.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from grw_edge._tables import format_table
from grw_edge.benchmarks.bench import run_worker
from grw_edge.exporters import export
from grw_edge.models import create_model, randomize_

BACKENDS = ("onnxruntime", "runtime", "runtime-lean")
FIGURES = {"import+open s": ("import_open_s",), "step ms": ("step", "median_ms"),
           "raw ms": ("raw_step", "median_ms"), "preprocess ms": ("preprocess", "median_ms"),
           "head ms": ("head", "median_ms"), "streaming peak MB": ("stream_peak_rss_mb",),
           "peak MB": ("peak_rss_mb",)}


def figure(result: dict, path: tuple[str, ...]) -> float:
    for key in path:
        result = result[key]
    return float(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {backend: [] for backend in BACKENDS}
    with tempfile.TemporaryDirectory() as tmp:
        artifact = export(randomize_(create_model("movineta0s"), 0).eval(), "onnx",
                          Path(tmp) / "a0s", parity_frames=4)
        for _ in range(args.rounds):
            for backend in BACKENDS:
                result = run_worker(artifact, backend, threads=args.threads,
                                    repeats=args.repeats)
                if result["status"] != "ok":
                    raise SystemExit(f"{backend}: {result['reason']}")
                runs[backend].append(result)
    rows = [{"backend": backend, "torch imported": "yes" if runs[backend][0]["modules"] else "no",
             **{name: f"{statistics.median(figure(r, path) for r in runs[backend]):.3g}"
                for name, path in FIGURES.items()}} for backend in BACKENDS]
    print(f"A0S 172 px, {args.threads} thread(s), medians over {args.rounds} interleaved rounds "
          f"(each of {args.repeats} timed runs)")
    print(format_table(rows))
    if args.json:
        args.json.write_text(json.dumps({"rounds": args.rounds, "threads": args.threads,
                                         "repeats": args.repeats, "table": rows, "runs": runs},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
