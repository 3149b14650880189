"""The device runtime (grw_edge_runtime): numpy preprocessing, self-tests, integrity, bad
frames and non-finite steps, and that it runs without torch."""
import json
import os
import shutil
import subprocess
import textwrap

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torchvision.transforms.v2 import functional as TF

import grw_edge.runtimes as runtimes
import grw_edge_runtime
from grw_edge.runtimes.torch import TorchSession
from grw_edge_runtime.cli import main as runtime_cli
from grw_edge_runtime.errors import ArtifactError, InputShapeError, NonFiniteOutputError
from grw_edge_runtime.integrity import record_files
from grw_edge_runtime.preprocess import preprocess
from tests.conftest import PROJECT_ROOT, small_random_model

# CI sets GRW_EDGE_RUNTIME_PYTHON to a venv holding only the runtime (.ci/run makes it)
RUNTIME_PYTHON = os.environ.get("GRW_EDGE_RUNTIME_PYTHON")


@pytest.mark.parametrize("height, width, resize, crop", [
    (240, 320, 200, 172), (720, 1280, 200, 172), (172, 172, 200, 172), (90, 120, 200, 172),
    (1080, 1920, 256, 224), (101, 77, 56, 48), (33, 47, 64, 48), (200, 200, 200, 172),
    (37, 301, 40, 32), (64, 64, 37, 32), (255, 3, 20, 16),
])
def test_numpy_preprocessing_equals_torchvision(height, width, resize, crop):
    frames = np.random.default_rng(height * width).integers(0, 256, (2, height, width, 3),
                                                           dtype=np.uint8)
    ours = preprocess(frames, resize=resize, crop=crop)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    reference = TF.center_crop(TF.resize(x, [resize, resize], antialias=True), [crop, crop])
    assert ours.shape == (2, 3, crop, crop) and ours.dtype == np.float32
    assert np.abs(ours - reference.numpy()).max() <= 1e-5


def copy_artifact(source, destination):
    shutil.copytree(source, destination)
    return destination


@pytest.mark.parametrize("name", ["movineta0s", "movineta1s", "movineta3b"])
def test_self_test_passes_on_the_exported_artifacts(artifacts, name, capsys):
    manifest = json.loads((artifacts[name] / "manifest.json").read_text())
    spec = manifest["selftest"]
    assert spec["frames"] == {"offset": 0, "shape": [8, 240, 320, 3], "dtype": "uint8"}
    assert spec["embeddings"]["shape"] == [8, 64] and spec["logits"]["shape"] == [600]
    assert spec["embeddings"]["offset"] % 4 == 0 and spec["logits"]["offset"] % 4 == 0
    assert spec["tolerance"]["embeddings"] == 1e-4 and spec["tolerance"]["logits"] == 1e-3
    assert set(manifest["files"]) >= {"step.onnx", "head.onnx", "labels.txt", "selftest.bin"}
    report = runtimes.open(artifacts[name]).self_test()
    assert report.passed, report.line()
    assert report.max_abs_embeddings <= 1e-4 and report.max_abs_logits <= 1e-3
    with pytest.raises(SystemExit) as done:
        runtime_cli(["selftest", str(artifacts[name])])
    line = capsys.readouterr().out
    assert done.value.code == 0 and line.startswith("PASS") and line.count("\n") == 1


def test_a_tampered_artifact_fails_its_self_test_in_one_line(artifacts, tmp_path, capsys):
    path = copy_artifact(artifacts["movineta0s"], tmp_path / "tampered")
    step = onnx.load(str(path / "step.onnx"))
    weight = max(step.graph.initializer, key=lambda tensor: np.prod(tensor.dims))
    weight.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(weight), weight.name))
    onnx.save(step, str(path / "step.onnx"))  # same size, other weights
    with pytest.raises(SystemExit) as done:
        runtime_cli(["selftest", str(path)])
    out = capsys.readouterr().out
    assert done.value.code == 1 and out.count("\n") == 1 and out.startswith("FAIL")
    assert "step.onnx has changed since export" in out and "embeddings differ" in out
    with pytest.raises(ArtifactError, match="step.onnx has changed"):
        grw_edge_runtime.open(path, verify=True)


@pytest.mark.parametrize("damage", ["truncated", "swapped"])
def test_a_damaged_graph_is_named_in_one_line(artifacts, tmp_path, capsys, damage):
    path = copy_artifact(artifacts["movineta2s"], tmp_path / damage)
    step = path / "step.onnx"
    if damage == "truncated":
        step.write_bytes(step.read_bytes()[:1000])
    else:
        shutil.copyfile(path / "head.onnx", step)
    with pytest.raises(ArtifactError, match=r"step\.onnx is \d+ bytes, the manifest records"):
        grw_edge_runtime.open(path)
    with pytest.raises(SystemExit) as done:
        runtime_cli(["selftest", str(path)])
    captured = capsys.readouterr()
    assert done.value.code == 1 and captured.out == ""
    assert captured.err.count("\n") == 1 and "step.onnx is" in captured.err
    assert "Traceback" not in captured.err and "onnxruntime" not in captured.err


def test_manifests_below_version_1_are_refused(artifacts, tmp_path):
    path = copy_artifact(artifacts["movineta2s"], tmp_path / "v0")
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "format_version": 0}))
    with pytest.raises(ArtifactError, match="format_version 0; versions start at 1"):
        grw_edge_runtime.open(path)


def torch_session(model=None, **options):
    return TorchSession.for_model(model or small_random_model("movineta0s"), resolution=32,
                                  **options)


def bad_frame_sessions(artifacts):
    yield runtimes.open(artifacts["movineta0s"], threads=1)
    yield torch_session()


def test_bad_frames_are_refused_and_leave_the_states_as_they_were(artifacts):
    rng = np.random.default_rng(0)
    good = [rng.integers(0, 256, (60, 80, 3), dtype=np.uint8) for _ in range(2)]
    for session in bad_frame_sessions(artifacts):
        r = session.manifest.resolution
        expected = [session.push(frame) for frame in good]
        logits = session.classify()
        session.reset()
        session.push(good[0])
        nan_frame = np.full((3, r, r), 0.5, np.float32)
        nan_frame[0, 1, 2] = np.nan
        bad = {"empty": np.zeros((0, 80, 3), np.uint8),
               "NaN": nan_frame, "infinite": np.full((3, r, r), np.inf, np.float32),
               "divide uint8 pixels by 255": np.full((3, r, r), 128.0, np.float32),
               "in \\[0, 1\\]": np.full((3, r, r), -0.01, np.float32)}
        for message, frame in bad.items():
            with pytest.raises(InputShapeError, match=message):
                session.push(frame)
        session.push(np.full((3, r, r), 1.0005, np.float32))  # within the margin
        session.reset()
        session.push(good[0])
        for frame in bad.values():
            with pytest.raises(InputShapeError):
                session.push(frame)
        assert np.array_equal(session.push(good[1]), expected[1]), session.backend
        assert np.array_equal(session.classify(), logits)
        assert session.faults == 0


def overflowing_artifact(artifacts, tmp_path):
    """A copy of the A0S artifact whose first convolution overflows on bright frames."""
    path = copy_artifact(artifacts["movineta0s"], tmp_path / "overflow")
    step = onnx.load(str(path / "step.onnx"))
    first_conv = next(node for node in step.graph.node if node.op_type == "Conv")
    weight = next(t for t in step.graph.initializer if t.name == first_conv.input[1])
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1e38, weight.name))
    onnx.save(step, str(path / "step.onnx"))
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"] = record_files(path)
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def overflowing_torch_session(**options):
    model = small_random_model("movineta0s")
    conv = next(m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d)))
    with torch.no_grad():
        conv.weight.mul_(1e38)
    return torch_session(model, **options)


def test_a_non_finite_step_does_not_stick(artifacts, tmp_path):
    dark = np.zeros((60, 80, 3), np.uint8)
    bright = np.full((60, 80, 3), 255, np.uint8)
    path = overflowing_artifact(artifacts, tmp_path)
    for make in (lambda **o: runtimes.open(path, threads=1, **o), overflowing_torch_session):
        session = make()
        clean = [session.push(dark) for _ in range(2)]
        logits = session.classify()
        session.reset()
        session.push(dark)
        with pytest.raises(NonFiniteOutputError, match="kept as before"):
            session.push(bright)
        assert session.faults == 1
        assert np.array_equal(session.push(dark), clean[1]), session.backend
        assert np.array_equal(session.classify(), logits)
        resetting = make(on_nonfinite="reset")
        resetting.push(dark)
        with pytest.warns(RuntimeWarning, match="was reset"):
            assert resetting.push(bright) is None
        assert resetting.faults == 1
        assert np.array_equal(resetting.push(dark), clean[0])


def test_the_runtime_streams_without_torch(artifacts, tmp_path):
    python = RUNTIME_PYTHON or str(PROJECT_ROOT / ".venv-runtime" / "bin" / "python")
    if not os.path.exists(python):
        assert RUNTIME_PYTHON is None, f"GRW_EDGE_RUNTIME_PYTHON={RUNTIME_PYTHON} does not exist"
        pytest.skip(f"no runtime-only virtual environment at {python}: create it with "
                    f"python3 -m venv .venv-runtime && .venv-runtime/bin/pip install "
                    f"./runtimes/python (CI does)")
    script = textwrap.dedent("""
        import sys
        import numpy as np
        import grw_edge_runtime
        session = grw_edge_runtime.open(sys.argv[1], threads=1)
        rng = np.random.default_rng(0)
        for _ in range(60):
            session.push(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
        assert session.classify().shape == (1, 600)
        assert session.self_test().passed
        leaked = sorted({"torch", "torchvision", "grw_edge"} & set(sys.modules))
        assert not leaked, leaked
        print("ok")
    """)
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "runtimes" / "python")}
    done = subprocess.run([python, "-c", script, str(artifacts["movineta0s"])],
                          capture_output=True, text=True, env=env, cwd=tmp_path, check=False)
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr
    probe = subprocess.run([python, "-c", "import torch"], capture_output=True,
                           env=env, cwd=tmp_path, check=False)
    assert probe.returncode != 0, "the runtime-only environment must not have torch"
