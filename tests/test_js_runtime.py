"""The TypeScript runtime (runtimes/js) against the Python onnxruntime session, in Node.

Python writes the cases (an exported A0S artifact with its self-test, raw frames with the
Python session's embeddings and logits, raw frames of several sizes with the Python
preprocessing); ``node --test`` on the compiled package checks them.  Skipped only where
``node`` is absent; a missing ``npm ci`` fails loudly.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import grw_edge.runtimes
from grw_edge.preprocess import preprocess_frames
from tests._selftest import write_selftest
from tests.conftest import PROJECT_ROOT

JS = PROJECT_ROOT / "runtimes" / "js"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed (the JS runtime "
                                                     "tests need Node >= 20)")
PREPROCESS_SIZES = [(240, 320), (37, 53), (48, 48), (30, 100), (20, 24), (480, 640)]


def js_build() -> Path:
    """The compiled package; built here when its sources are newer (needs `npm ci` first)."""
    if not (JS / "node_modules" / "onnxruntime-node").is_dir():
        pytest.fail(f"the JS runtime's dependencies are not installed: run "
                    f"`ONNXRUNTIME_NODE_INSTALL=skip npm ci` in {JS} (.ci/run does)")
    built = JS / "dist" / "index.js"
    newest = max(p.stat().st_mtime for p in (JS / "src").glob("*.ts"))
    if not built.exists() or built.stat().st_mtime < newest:
        subprocess.run(["npm", "run", "--silent", "build"], cwd=JS, check=True)
    return JS / "dist"


def run_node(test_file: str, case: Path) -> None:
    """``node --test`` one file of runtimes/js/test with the case folder; fails with its log."""
    js_build()
    result = subprocess.run([NODE, "--test", "--test-reporter=spec", f"test/{test_file}"],
                            cwd=JS, env={**os.environ, "GRW_JS_CASE": str(case)},
                            capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        pytest.fail(f"node --test {test_file} failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}")
    print(result.stdout)  # the measured differences, shown with pytest -rP


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


@pytest.fixture(scope="module")
def js_case(artifacts, tmp_path_factory) -> Path:
    """The A0S artifact (fused graph, self-test) and what the Python session makes of frames."""
    case = tmp_path_factory.mktemp("js-case")
    artifact = case / "a0s"
    shutil.copytree(artifacts["movineta0s"], artifact)
    write_selftest(artifact, _frames(8, 240, 320, seed=1))

    frames = _frames(12, 72, 96, seed=2)
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
    preprocess = []
    for i, (height, width) in enumerate(PREPROCESS_SIZES):
        raw = _frames(1, height, width, seed=10 + i)[0]
        raw.tofile(case / f"raw{i}.bin")
        for resize, crop in settings:
            name = f"pre{i}_{resize}_{crop}.bin"
            preprocess_frames(raw, resize=resize, crop=crop).numpy().tofile(case / name)
            preprocess.append({"raw": f"raw{i}.bin", "height": height, "width": width,
                               "resize": resize, "crop": crop, "expected": name})
    _write_nonfinite_artifact(case / "nonfinite")
    (case / "case.json").write_text(json.dumps({
        "artifact": str(artifact), "nonfinite": str(case / "nonfinite"),
        "frames": list(frames.shape), "embed_dim": manifest.embed_dim,
        "num_classes": manifest.num_classes, "preprocess": preprocess}, indent=1))
    return case


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


def test_streaming_matches_python(js_case):
    """Frame by frame, fused and unfused: embeddings <= 1e-4, logits <= 1e-3, same top-1."""
    run_node("parity.test.mjs", js_case)


def test_preprocessing_matches_python(js_case):
    """Raw RGB/RGBA frames of several sizes, two resize/crop settings: <= 1e-5."""
    run_node("preprocess.test.mjs", js_case)


def test_manifest_errors_are_readable(js_case):
    """Every damaged artifact gives its own one-line message, never a bare ORT error."""
    run_node("manifest.test.mjs", js_case)


def test_bad_frames_and_nonfinite_steps(js_case):
    """Empty, non-finite and out-of-range frames are refused; a non-finite step keeps the
    states, raises or resets, and counts a fault."""
    run_node("frames.test.mjs", js_case)


def test_selftest(js_case):
    """The artifact's selftest.bin passes in Node; a tampered reference fails it."""
    run_node("selftest.test.mjs", js_case)
