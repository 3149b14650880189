"""The case folder the JS runtime's tests read (runtimes/js/test, GRW_JS_CASE): artifacts
exported here, raw frames, and what the Python sessions and preprocessing make of them.

    python -m tests.js_case DIR       # what `npm test` in runtimes/js runs when GRW_JS_CASE is unset

tests/test_js_runtime.py makes it from the suite's shared artifacts and runs `npm test` on it.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

import grw_edge.runtimes
from grw_edge_runtime.preprocess import preprocess
from tests.conftest import Artifacts, export_litert_a0s

PREPROCESS_SIZES = [(240, 320), (37, 53), (48, 48), (30, 100), (20, 24), (480, 640)]
LITERT_FRAMES = 6


def _frames(count: int, height: int, width: int, seed: int) -> np.ndarray:
    """Smooth random uint8 frames with motion (camera-like content, not white noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    frames = []
    for t in range(count):
        phase = rng.uniform(0, 2 * np.pi, 3)
        image = np.stack([np.sin(6 * x + 3 * y + t * 0.4 + p) for p in phase], -1)
        frames.append(np.clip((image + 1) * 127.5 + rng.normal(0, 12, image.shape), 0, 255))
    return np.asarray(frames, np.uint8)


def make_case(case: Path, artifacts: dict[str, Path] | None = None, litert: Path | None = None) -> Path:
    """The A0S artifact (fused graph, the exporter's self-test) and what the Python session
    and the Python runtime's preprocessing make of frames; a LiteRT A0S artifact with the
    Python LiteRT session's embeddings where litert-torch is installed.  ``artifacts``, ``litert``:
    the ONNX and LiteRT artifacts of tests/conftest.py (exported here when not given)."""
    case.mkdir(parents=True, exist_ok=True)
    if artifacts is None:
        artifacts, litert = Artifacts(case / "exported"), _export_litert(case / "exported" / "a0s-litert")
    artifact = case / "a0s"
    shutil.copytree(artifacts["movineta0s"], artifact)  # its selftest.bin is the exporter's

    frames = _frames(54, 72, 96, seed=2)  # past the 50-frame window: the fused logits count
    session = grw_edge.runtimes.open(artifact, backend="onnxruntime", threads=1)
    session.reset()
    embeddings, logits = [], []
    for frame in frames:
        embeddings.append(session.push(frame)[0, 0])
        logits.append(session.classify()[0])
    frames.tofile(case / "frames.bin")
    np.asarray(embeddings, np.float32).tofile(case / "embeddings.bin")
    np.asarray(logits, np.float32).tofile(case / "logits.bin")

    manifest = session.manifest
    settings = [(int(manifest.input["preprocess"]["resize"][0]), manifest.resolution), (200, 172)]
    cases = []
    for i, (height, width) in enumerate(PREPROCESS_SIZES):
        raw = _frames(1, height, width, seed=10 + i)[0]
        raw.tofile(case / f"raw{i}.bin")
        for resize, crop in settings:
            name = f"pre{i}_{resize}_{crop}.bin"
            preprocess(raw, resize=resize, crop=crop).tofile(case / name)
            cases.append({"raw": f"raw{i}.bin", "height": height, "width": width,
                               "resize": resize, "crop": crop, "expected": name})
    _write_nonfinite_artifact(case / "nonfinite")
    others = {}  # two frames per step (A1S) and a whole-clip backbone (A3B), for the self-test
    for name in ("movineta1s", "movineta3b"):
        shutil.copytree(artifacts[name], case / name)
        others[name] = str(case / name)
    (case / "case.json").write_text(json.dumps({
        "artifact": str(artifact), "nonfinite": str(case / "nonfinite"), "others": others,
        "litert": litert and _litert_case(case, litert),
        "frames": list(frames.shape), "embed_dim": manifest.embed_dim,
        "num_classes": manifest.num_classes, "preprocess": cases}, indent=1))
    return case


def _export_litert(directory: Path) -> Path | None:
    """conftest's small LiteRT artifact; None without litert-torch (the browser tests of
    LiteRT.js then say they skipped)."""
    try:
        import litert_torch  # noqa: F401
    except ImportError:
        return None
    return export_litert_a0s(directory)


def _litert_case(case: Path, litert: Path) -> dict:
    """The LiteRT artifact, raw frames and the Python LiteRT session's embeddings and logits
    on them."""
    artifact = Path(shutil.copytree(litert, case / "a0s-litert"))
    frames = _frames(LITERT_FRAMES, 60, 80, seed=7)
    session = grw_edge.runtimes.open(artifact, backend="litert", threads=1)
    session.reset()
    embeddings = [session.push(frame)[0, 0] for frame in frames]
    frames.tofile(case / "litert_frames.bin")
    np.asarray(embeddings, np.float32).tofile(case / "litert_embeddings.bin")
    np.asarray(session.classify()[0], np.float32).tofile(case / "litert_logits.bin")
    return {"artifact": str(artifact), "frames": list(frames.shape)}


def _write_nonfinite_artifact(directory: Path, side: int = 8) -> None:
    """A tiny artifact whose step returns log(mean(frame)) + count: -inf on a black frame.

    Its state ``count`` (frames seen) shows whether a failed step left the states alone."""
    directory.mkdir()
    frames = helper.make_tensor_value_info("frames", TensorProto.FLOAT, [1, 3, 1, side, side])
    count = helper.make_tensor_value_info("count", TensorProto.FLOAT, [1])
    nodes = [
        helper.make_node("ReduceMean", ["frames"], ["mean"], axes=[1, 2, 3, 4], keepdims=0),
        helper.make_node("Log", ["mean"], ["log"]),
        helper.make_node("Add", ["log", "count"], ["sum"]),
        helper.make_node("Reshape", ["sum", "shape"], ["embeddings"]),
        helper.make_node("Add", ["count", "one"], ["count_next"]),
    ]
    step = helper.make_graph(
        nodes, "step", [frames, count],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, [1, 1, 1]),
         helper.make_tensor_value_info("count_next", TensorProto.FLOAT, [1])],
        [helper.make_tensor("shape", TensorProto.INT64, [3], [1, 1, 1]),
         helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])])
    head = helper.make_graph(
        [helper.make_node("ReduceMean", ["embeddings"], ["logits"], axes=[1], keepdims=0)],
        "head", [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, [1, "n", 1])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1])])
    for graph, name in ((step, "step.onnx"), (head, "head.onnx")):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        onnx.save(model, directory / name)
    (directory / "labels.txt").write_text("only\n")
    manifest = {
        "format_version": 1, "backbone": "tiny", "target": "onnx", "precision": "fp32",
        "mode": "streaming", "frames_per_clip": 4, "fps": 5, "embed_dim": 1, "num_classes": 1,
        "input": {"name": "frames", "shape": [1, 3, 1, side, side], "dtype": "float32",
                  "layout": "NCTHW", "range": [0, 1],
                  "preprocess": {"resize": [side, side], "center_crop": [side, side]}},
        "states": [{"name": "count", "input": "count", "output": "count_next", "shape": [1],
                    "dtype": "float32", "init": 0.0}],
        "step": {"file": "step.onnx", "outputs": {"embeddings": "embeddings"}},
        "head": {"file": "head.onnx", "input": "embeddings", "output": "logits"},
        "labels": "labels.txt", "source": {"weights": "random-init"}}
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1))




if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "runtimes/js/.case").resolve()
    shutil.rmtree(target, ignore_errors=True)
    print(make_case(target))
