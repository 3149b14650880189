"""``grw-edge bench``: FLOPs, latency and memory per backbone and backend, as tables,
JSON, Markdown and plots.

Weights are random (cost does not depend on them).  Each backend is timed in a process of
its own so that its peak memory and import time are its own: the toolkit's backends through
``grw_edge.runtimes`` (torch imported, as before), and ``runtime`` / ``runtime-lean`` /
``litert``, the device runtime alone with onnxruntime (default or lean allocator settings)
or LiteRT on the LiteRT artifact, as an app on a device runs it.  A backend whose package or device is missing is reported as skipped, with
the reason.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from grw_edge._progress import progress
from grw_edge._tables import format_table
from grw_edge.benchmarks.flops import PAPER_GFLOPS, UPSTREAM_FVCORE_GFLOPS, count_flops
from grw_edge.exporters import export
from grw_edge.manifest import read_manifest
from grw_edge.models import create_model, randomize_
from grw_edge.registry import get_backbone

SCHEMA_VERSION = 1
# the device runtime alone (grw_edge_runtime with onnxruntime): bench name -> memory mode
RUNTIME_BACKENDS = {"runtime": "default", "runtime-lean": "lean"}
BACKENDS = ("torch", "torch-cudagraphs", "torch-replay", "torch-compiled", "onnxruntime",
            *RUNTIME_BACKENDS, "litert", "tensorrt", "coreml")
# backends that run an artifact of their own target (the others run the ONNX artifact)
OWN_TARGET = {"litert": "litert", "tensorrt": "tensorrt"}
# --device cuda rows: eager steps, the session replaying CUDA graphs, the graph replay alone
# (torch-compiled, the session with torch.compile before capture, is asked for by name: its
# compilation takes a minute per backbone and precision)
CUDA_BACKENDS = ("torch", "torch-cudagraphs", "torch-replay", "onnxruntime", "tensorrt")
GRAPH_BACKENDS = ("torch-cudagraphs", "torch-replay", "torch-compiled")
# rows timed once per --precision (the other backends run their artifact's float32)
PRECISION_BACKENDS = ("torch", *GRAPH_BACKENDS)
# Top-1 on Kinetics-600 reported by the paper for the GRW models (Table 1).
PAPER_TOP1 = {"movineta0s": 78.4, "movineta1s": 81.9, "movineta2s": 83.3, "movineta3b": 85.6}
# The paper's other models (Table 1): name -> (top-1, GFLOPs), for the accuracy plot.
PAPER_REFERENCE_POINTS = {
    "MoViNet-A0": (72.3, 2.7), "MoViNet-A1": (76.7, 6.0), "MoViNet-A2": (78.6, 10.3),
    "MoViNet-A3": (81.8, 56.9), "MoViNet-A4": (83.5, 105), "X3D-XS": (70.2, 3.9),
    "X3D-S": (73.4, 7.8), "X3D-M": (76.9, 19.4), "MobileNetV3-S": (61.3, 2.8),
    "MobileNetV3-L": (68.1, 11.0), "UniFormer-S": (82.8, 167), "MViTv2-B-32x3": (85.5, 1030),
}


def backend_unavailable(backend: str, device: str = "cpu",
                        precision: str = "fp32") -> str | None:
    """Why ``backend`` cannot run on ``device`` in ``precision`` here, or None if it can
    (``tflite``: the peer rows of --compare-tflite)."""
    if backend in ("litert", "tflite"):
        try:
            import ai_edge_litert  # noqa: F401
        except ImportError:
            return "ai-edge-litert is not installed (extra: grw-edge[litert])"
        if backend == "litert" and device != "cpu":
            return "the litert rows time LiteRT's CPU path, XNNPACK (drop --device cuda)"
        return None
    if backend not in BACKENDS:
        return f"unknown backend; choose from {', '.join(BACKENDS)}"
    if backend == "coreml":
        if sys.platform != "darwin":
            return "Core ML runs only on macOS"
        return "no Core ML runtime session in this version of grw-edge yet"
    if backend in GRAPH_BACKENDS and device != "cuda":
        return "CUDA graphs need --device cuda"
    if precision == "fp16" and device != "cuda":
        return "fp16 rows need --device cuda (the CPU rows run fp32 or bf16)"
    if (device == "cuda" or backend == "tensorrt") and not torch.cuda.is_available():
        return "no CUDA GPU is visible on this machine"
    if backend == "tensorrt":
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return "the tensorrt package is not installed (extra: grw-edge[tensorrt])"
    if backend in RUNTIME_BACKENDS and device != "cpu":
        return "the device-runtime rows time onnxruntime's CPU provider (drop --device cuda)"
    if backend == "onnxruntime" and device == "cuda":
        import onnxruntime

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            return "onnxruntime has no CUDA provider (install onnxruntime-gpu: grw-edge[gpu])"
    return None


def worker_command(artifact: Path, backend: str, *, threads: int, repeats: int,
                   device: str = "cpu", precision: str = "fp32",
                   extra: tuple[str, ...] = ()) -> list[str]:
    """The command that times ``backend`` on ``device``, its clock started before its first
    import: the runtime alone, a TF Lite model under LiteRT, or the toolkit's sessions."""
    if backend in RUNTIME_BACKENDS:
        module = "grw_edge_runtime.bench"
        chosen = ["--backend", "onnxruntime", "--ort-memory", RUNTIME_BACKENDS[backend]]
    elif backend == "litert":
        module, chosen = "grw_edge_runtime.bench", ["--backend", "litert"]
    elif backend == "tflite":
        module, chosen = "grw_edge_runtime.peer", []
    else:
        module, chosen = "grw_edge.benchmarks.worker", ["--backend", backend, "--device", device]
        if backend in PRECISION_BACKENDS:
            chosen += ["--precision", precision]
    boot = f"import time; t0 = time.perf_counter(); from {module} import main; main(t0)"
    return [sys.executable, "-c", boot, str(artifact), *chosen, "--threads", str(threads),
            "--repeats", str(repeats), *extra]


def run_worker(artifact: Path, backend: str, *, threads: int, repeats: int,
               device: str = "cpu", precision: str = "fp32") -> dict:
    """Time one backend in a fresh process; returns its JSON result."""
    command = worker_command(artifact, backend, threads=threads, repeats=repeats, device=device,
                             precision=precision)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        lines = done.stderr.strip().splitlines()
        return {"backend": backend, "status": "failed", "reason": lines[-1] if lines else ""}
    return {**json.loads(done.stdout), "backend": backend, "status": "ok"}


def run_bench(backbones: list[str], backends: list[str], *, threads: int = 1,
              repeats: int = 100, resolution: int | None = None,
              frames: int | None = None, device: str = "cpu",
              precisions: tuple[str, ...] = ("fp32",), tflite: list[Path] = ()) -> dict:
    """Measure every backbone on every backend on ``device`` (the torch rows once per
    precision, keyed ``backend`` for fp32 and ``backend-precision`` otherwise), and each
    ``tflite`` streaming model with LiteRT; returns the JSON-ready results.  TensorRT runs
    an engine built here from the same model."""
    results: dict[str, object] = {
        "schema_version": SCHEMA_VERSION, "threads": threads, "repeats": repeats,
        "precisions": list(precisions),
        "device": torch.cuda.get_device_name() if device == "cuda" and
        torch.cuda.is_available() else device,
        "machine": {"platform": platform.platform(), "processor": platform.machine(),
                    "cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "onnxruntime": _version("onnxruntime")},
        "backbones": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in progress(backbones, desc="bench", unit="backbone"):
            spec = get_backbone(name)
            side = resolution or spec.resolution
            model = randomize_(create_model(spec.name), 0).eval()
            flops = count_flops(model, frames or spec.frames_per_clip, side)
            artifact = export(model, "onnx", Path(tmp) / name, resolution=side, parity_frames=4)
            manifest = read_manifest(artifact)
            entry = {
                "resolution": side, "frames": flops.frames, "mode": manifest.mode,
                "paper_setting": (side, flops.frames) == (spec.resolution,
                                                         spec.frames_per_clip),
                "flops": flops.to_dict(),
                "paper_gflops": PAPER_GFLOPS[spec.name],
                "upstream_fvcore_gflops": UPSTREAM_FVCORE_GFLOPS[spec.name],
                "state_bytes": sum(4 * _numel(s.shape) for s in manifest.states),
                "state_tensors": len(manifest.states),
                "artifact_bytes": sum(p.stat().st_size for p in artifact.iterdir()
                                      if p.suffix == ".onnx"),
                "backends": {}}
            for backend, precision in rows_to_time(backends, precisions):
                key = backend if precision == "fp32" else f"{backend}-{precision}"
                reason = backend_unavailable(backend, device, precision)
                if reason:
                    entry["backends"][key] = {"backend": backend, "precision": precision,
                                              "status": "skipped", "reason": reason}
                    continue
                target = OWN_TARGET.get(backend)
                source = artifact if target is None else export(
                    model, target, Path(tmp) / f"{name}-{target}", resolution=side,
                    parity_frames=4)
                entry["backends"][key] = {**run_worker(
                    source, backend, threads=threads, repeats=repeats, device=device,
                    precision=precision), "precision": precision}
            results["backbones"][spec.name] = entry
    if tflite:
        reason = backend_unavailable("tflite")
        results["tflite"] = {str(path): (
            {"backend": "tflite", "status": "skipped", "reason": reason} if reason else
            run_worker(path, "tflite", threads=threads, repeats=repeats))
            for path in progress(tflite, desc="bench", unit="tflite")}
    return results


def rows_to_time(backends: list[str], precisions: tuple[str, ...]) -> list[tuple[str, str]]:
    """(backend, precision) pairs: the torch rows per precision, the others in fp32."""
    return [(backend, precision) for backend in backends
            for precision in (precisions if backend in PRECISION_BACKENDS else ("fp32",))]


def _numel(shape: list[int]) -> int:
    total = 1
    for size in shape:
        total *= size
    return total


def _version(package: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(package)
    except Exception:
        return None


# --------------------------------------------------------------------------- output

def flops_rows(results: dict) -> list[dict[str, str]]:
    rows = []
    for name, entry in results["backbones"].items():
        flops, paper = entry["flops"], entry["paper_gflops"]
        rows.append({
            "backbone": name, "input": f"{entry['frames']}x{entry['resolution']}px",
            "GFLOPs": f"{flops['total_gflops']:.2f}",
            "backbone/head": f"{flops['backbone_gflops']:.2f}/{flops['head_gflops']:.3f}",
            "per frame": f"{1e3 * flops['per_frame_gflops']:.1f} M",
            "paper": f"{paper:g}",
            "vs paper": (f"{(flops['total_gflops'] / paper - 1):+.1%}"
                         if entry["paper_setting"] else "n/a: other setting"),
            "upstream fvcore": f"{entry['upstream_fvcore_gflops']:g}",
            "params": f"{flops['parameters'] / 1e6:.2f} M"})
    return rows


def latency_rows(results: dict) -> list[dict[str, str]]:
    rows = []
    for name, entry in results["backbones"].items():
        for backend, result in entry["backends"].items():
            if result["status"] != "ok":
                rows.append({"backbone": name, "backend": backend, "step ms": "-",
                             "p90 ms": "-", "raw ms": "-", "head ms": "-", "clip ms": "-",
                             "import+open": "-", "first frame": "-", "peak RSS": "-",
                             "streaming peak": "-",
                             "note": f"{result['status']}: {result.get('reason', '')}"})
                continue
            step, raw = result.get("step"), result.get("raw_step")
            opened, first = result.get("import_open_s"), result.get("first_frame_s")
            rows.append({
                "backbone": name, "backend": backend,
                "step ms": f"{step['median_ms']:.2f}" if step else "-",
                "p90 ms": f"{step['p90_ms']:.2f}" if step else "-",
                "raw ms": f"{raw['median_ms']:.2f}" if raw else "-",
                "head ms": _median(result, "head", ".2f"),
                "clip ms": _median(result, "clip", ".1f"),
                "import+open": f"{opened:.2f} s" if opened is not None else "-",
                "first frame": f"{first:.2f} s" if first is not None else "-",
                "peak RSS": f"{result['peak_rss_mb']:.0f} MB" + (
                    f" (+{result['session_rss_mb']:.0f})" if "session_rss_mb" in result else ""),
                "streaming peak": (f"{result['stream_peak_rss_mb']:.0f} MB"
                                   if "stream_peak_rss_mb" in result else "-"),
                "note": f"state {entry['state_bytes'] / 2**20:.2f} MiB in "
                        f"{entry['state_tensors']} tensors; artifact "
                        f"{entry['artifact_bytes'] / 2**20:.1f} MiB"})
    return rows


def _median(result: dict, key: str, spec: str) -> str:
    """A timing's median formatted, or "-" for rows that do not time it (graph replay)."""
    return format(result[key]["median_ms"], spec) if key in result else "-"


def report_text(results: dict, *, markdown: bool = False) -> str:
    machine = results["machine"]
    header = (f"{machine['processor']}, {machine['cpus']} CPUs, {results['threads']} thread(s), "
              f"device {results.get('device', 'cpu')}, "
              f"{'/'.join(results.get('precisions', ['fp32']))} torch rows (the others float32), "
              f"torch {machine['torch']}, onnxruntime {machine['onnxruntime']}; "
              f"medians of {results['repeats']} runs after warm-up")
    parts = [header, "", "FLOPs (fvcore, 1 multiply-add = 1 FLOP):",
             format_table(flops_rows(results), markdown=markdown), "",
             "Latency and memory (streaming step per frame, preprocessed; raw: the same with "
             "a raw uint8 240x320 frame, numpy preprocessing included; head over the clip's "
             "embeddings; whole clip streamed or, for clip-mode models, in one call; import "
             "+ open: from the first import to an open session; first frame: to the first "
             "frame's embeddings; peak resident memory of the "
             "process, and in brackets what the session added to the libraries; streaming "
             "peak: the peak before the whole-clip test, what a streaming app holds; runtime: "
             "grw_edge_runtime alone with onnxruntime, no torch; litert: grw_edge_runtime "
             "alone with LiteRT on the LiteRT artifact):",
             format_table(latency_rows(results), markdown=markdown)]
    if results.get("tflite"):
        parts += ["", "TF Lite models under LiteRT (the same streaming loop: one frame and the "
                      "states in, the states carried):",
                  format_table(tflite_rows(results), markdown=markdown)]
    return "\n".join(parts)


def tflite_rows(results: dict) -> list[dict[str, str]]:
    rows = []
    for path, result in results.get("tflite", {}).items():
        if result["status"] != "ok":
            rows.append({"model": Path(path).name, "step ms": "-", "p90 ms": "-",
                         "first frame": "-", "peak RSS": "-",
                         "note": f"{result['status']}: {result['reason']}"})
            continue
        step = result["step"]
        rows.append({"model": Path(path).name, "step ms": f"{step['median_ms']:.2f}",
                     "p90 ms": f"{step['p90_ms']:.2f}",
                     "first frame": f"{result['first_frame_s']:.2f} s",
                     "peak RSS": f"{result['peak_rss_mb']:.0f} MB "
                                 f"(+{result['session_rss_mb']:.0f})",
                     "note": f"state {result['state_bytes'] / 2**20:.2f} MiB in "
                             f"{result['states']} tensors"})
    return rows


def write_plots(results: dict, directory: Path) -> list[Path]:
    """accuracy_vs_gflops.png and latency.png; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for label, (top1, gflops) in PAPER_REFERENCE_POINTS.items():
        axis.scatter(gflops, top1, color="tab:blue", s=18)
        axis.annotate(label, (gflops, top1), fontsize=7, xytext=(3, 2),
                      textcoords="offset points")
    for name, entry in results["backbones"].items():
        if not entry["paper_setting"]:
            continue  # the paper's accuracy belongs to the paper's input size only
        gflops = entry["flops"]["total_gflops"]
        axis.scatter(gflops, PAPER_TOP1[name], color="tab:red", s=30, marker="D")
        axis.annotate(f"{name} (GRW)", (gflops, PAPER_TOP1[name]), fontsize=8, color="tab:red",
                      xytext=(3, -9), textcoords="offset points")
    axis.set(xscale="log", xlabel="GFLOPs per video (red: counted here)",
             ylabel="Kinetics-600 top-1 (%) from the paper", title="Accuracy vs FLOPs")
    figure.tight_layout()
    accuracy_path = directory / "accuracy_vs_gflops.png"
    figure.savefig(accuracy_path, dpi=120)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(7, 4))
    labels, values, colours = [], [], []
    for name, entry in results["backbones"].items():
        for backend, result in entry["backends"].items():
            if result["status"] == "ok" and "step" in result:
                labels.append(f"{name}\n{backend}")
                values.append(result["step"]["median_ms"])
                colours.append("tab:orange" if backend == "torch" else "tab:green")
    axis.bar(range(len(values)), values, color=colours)
    axis.set_xticks(range(len(values)), labels, fontsize=7)
    axis.set(ylabel="ms per frame (median)",
             title=f"Streaming step latency, {results['threads']} thread(s)")
    figure.tight_layout()
    latency_path = directory / "latency.png"
    figure.savefig(latency_path, dpi=120)
    plt.close(figure)
    return [accuracy_path, latency_path]
