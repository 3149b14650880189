"""The TypeScript runtime (runtimes/js) against the Python sessions, in Node and Chromium.

Python writes the case (tests/js_case.py: exported ONNX and LiteRT artifacts with their
self-tests, raw frames with the Python sessions' embeddings and logits, raw frames of several
sizes with the Python preprocessing); the package's own `npm test` checks them, once.  Skipped
only where ``node`` is absent; a missing ``npm ci`` or Chromium fails loudly.
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
import pytest

import grw_edge.runtimes
from grw_edge.data.synthetic import make_synthetic_dataset
from tests.conftest import PROJECT_ROOT
from tests.js_case import make_case

JS = PROJECT_ROOT / "runtimes" / "js"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed (the JS runtime "
                                                     "tests need Node >= 20)")


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


@pytest.fixture(scope="module")
def js_case(artifacts, litert_artifact, tmp_path_factory) -> Path:
    """The case folder of the JS tests (tests/js_case.py), from the suite's artifacts."""
    return make_case(tmp_path_factory.mktemp("js-case"), artifacts, litert_artifact)


def test_npm_test(js_case):
    """`npm test` in runtimes/js, once: in Node, streaming parity with the Python session
    (fused and not), preprocessing, readable manifest errors, bad frames and non-finite
    steps, the self-tests; in Chromium, the ONNX artifact's self-test on onnxruntime-web, the
    LiteRT artifact's on LiteRT.js (1 and 2 threads) and its embeddings against the Python
    LiteRT session's."""
    js_build()
    result = subprocess.run(["npm", "test", "--silent"], cwd=JS, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "GRW_JS_CASE": str(js_case),
                                              "CHROMIUM": str(CHROMIUM)})
    if result.returncode != 0:
        pytest.fail(f"npm test failed:\n{result.stdout[-8000:]}\n{result.stderr[-3000:]}")
    print(result.stdout)  # the measured differences, shown with pytest -rP
    skipped = re.findall(r"﹣ (.*) # SKIP", result.stdout)
    if json.loads((js_case / "case.json").read_text())["litert"]:  # else no litert-torch here
        assert not skipped, f"npm test skipped: {skipped}"


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
