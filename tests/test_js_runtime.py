"""The TypeScript runtime (runtimes/js) against the Python onnxruntime session, in Node.

Python writes the cases (an exported A0S artifact with its self-test, raw frames with the
Python session's embeddings and logits, raw frames of several sizes with the Python
preprocessing); ``node --test`` on the compiled package checks them.  Skipped only where
``node`` is absent; a missing ``npm ci`` fails loudly.
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import grw_edge.runtimes
from grw_edge.data.synthetic import make_synthetic_dataset
from grw_edge_runtime.preprocess import preprocess
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
    """The A0S artifact (fused graph, the exporter's self-test) and what the Python session
    and the Python runtime's preprocessing make of frames."""
    case = tmp_path_factory.mktemp("js-case")
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
        "frames": list(frames.shape), "embed_dim": manifest.embed_dim,
        "num_classes": manifest.num_classes, "preprocess": cases}, indent=1))
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
    """The artifacts' selftest.bin passes in Node (one and two frames per step, whole-clip
    mode); a tampered reference fails it."""
    run_node("selftest.test.mjs", js_case)


def test_react_native_example_typechecks():
    """The React Native example against the real react-native, onnxruntime-react-native and
    vision-camera types (it cannot run here)."""
    example = JS / "examples" / "react-native"
    if not (example / "node_modules" / "react-native").is_dir():
        pytest.fail(f"the React Native example's packages are not installed: run "
                    f"`npm ci --ignore-scripts` in {example} (.ci/run does)")
    js_build()
    result = subprocess.run([NODE, "node_modules/typescript/bin/tsc", "--noEmit", "-p",
                             "tsconfig.json"], cwd=example, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-4000:]

# ---------------------------------------------------------------------- the real browser

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
TEST_ARTIFACTS = Path(os.environ.get("GRW_TEST_ARTIFACTS", PROJECT_ROOT / "test-artifacts"))


def write_y4m(video: Path, target: Path) -> np.ndarray:
    """The decoded frames of ``video`` as a raw .y4m (the fake camera's input); returns them
    as RGB (BT.601 limited range, as Chromium converts them)."""
    import av

    rgb = []
    with av.open(str(video)) as source, av.open(str(target), "w", format="yuv4mpegpipe") as out:
        decoded = source.streams.video[0]
        stream = out.add_stream("rawvideo", rate=decoded.average_rate)
        stream.width, stream.height, stream.pix_fmt = decoded.width, decoded.height, "yuv420p"
        for frame in source.decode(decoded):
            frame = frame.reformat(format="yuv420p")
            rgb.append(frame.to_ndarray(format="rgb24"))
            out.mux(stream.encode(frame))
    return np.asarray(rgb)


@contextlib.contextmanager
def serving(artifact: Path):
    """``grw-edge serve ARTIFACT --port 0`` in a subprocess; yields the URL it prints."""
    process = subprocess.Popen([sys.executable, "-m", "grw_edge.cli", "serve", str(artifact),
                                "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        match = re.search(r"http://\S+/", line)
        assert match, f"grw-edge serve printed {line!r}"
        yield match.group(0)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_demo_in_chromium(js_case, tmp_path):
    """The demo page with a fake camera playing a synthetic video: the page's top-1 equals
    the Python session's on the same frames, the self-test button passes, and a damaged
    artifact shows a readable error."""
    if not CHROMIUM.exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's chromium (.ci/run does) or "
                    f"set CHROMIUM")
    js_build()
    make_synthetic_dataset(tmp_path / "synthetic", videos_per_class=1, test_videos_per_class=1,
                           frames=40, size=96, fps=10)
    camera = write_y4m(tmp_path / "synthetic" / "test" / "yaw" / "yaw_0000.mp4",
                       tmp_path / "camera.y4m")
    artifact = Path(json.loads((js_case / "case.json").read_text())["artifact"])
    damaged = tmp_path / "damaged"
    shutil.copytree(artifact, damaged)
    with serving(artifact) as url, serving(damaged) as bad_url:
        (damaged / "head.onnx").unlink()  # damaged while served: the page must say so
        result = subprocess.run(
            [NODE, "test/browser.mjs"], cwd=JS, capture_output=True, text=True, timeout=240,
            env={**os.environ, "GRW_DEMO_URL": url, "GRW_BAD_URL": bad_url, "GRW_FRAMES": "12",
                 "GRW_Y4M": str(tmp_path / "camera.y4m"), "GRW_OUT": str(tmp_path),
                 "CHROMIUM": str(CHROMIUM)})
    assert result.returncode == 0, result.stderr[-4000:]
    TEST_ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name in ("demo.png", "demo-selftest.png", "demo-error.png"):
        shutil.copy(tmp_path / name, TEST_ARTIFACTS / f"js-{name}")
    report = json.loads((tmp_path / "browser.json").read_text())
    live = report["live"]
    assert live["error"] is None, f"{live['error']}; console: {report['logs']}"
    assert live["isolated"], "the page is not cross-origin isolated (COOP/COEP headers)"

    session = grw_edge.runtimes.open(artifact, backend="onnxruntime", threads=1)
    session.reset()
    worst_logits, matched = 0.0, []
    for shown in live["results"]:
        rgba = np.frombuffer(base64.b64decode(shown["rgba"]), np.uint8)
        frame = rgba.reshape(shown["height"], shown["width"], 4)[..., :3]
        distance = np.abs(camera.astype(np.int16) - frame).mean(axis=(1, 2, 3))
        matched.append(int(distance.argmin()))
        assert distance.min() < 2.0, f"a page frame matches no camera frame ({distance.min():.1f})"
        session.push(np.ascontiguousarray(frame))
        logits = session.classify()[0]
        assert shown["top1"] == int(logits.argmax())
        worst_logits = max(worst_logits, float(np.abs(np.asarray(shown["logits"]) - logits).max()))
    assert worst_logits <= 1e-3
    assert live["selftest"].startswith("passed"), live["selftest"]
    assert len(set(matched)) > 1, "the camera did not move"
    print(f"browser vs Python: {len(matched)} frames (camera frames {matched}), "
          f"max |logits| {worst_logits:.2e}, same top-1")
    assert not report["bad"]["hidden"]
    assert re.search(r"the manifest names 'head\.onnx', which is missing", report["bad"]["text"])
