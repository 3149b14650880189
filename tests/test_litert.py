"""LiteRT target: the artifact LiteRT itself reads (signature names, delegation to XNNPACK),
parity through the runtime's LiteRT session, the session's contract, and clear refusals."""
import json

import numpy as np
import pytest
import torch

import grw_edge.exporters.litert as litert_exporter
from grw_edge.errors import BackendUnavailableError, ExportError, InputShapeError, NonFiniteOutputError
from grw_edge.exporters import export
from grw_edge.exporters.litert import convert, litert_torch
from grw_edge.verify import verify_artifact
from grw_edge_runtime import open as open_session
from grw_edge_runtime.litert import LiteRTSession, xnnpack_outside
from tests.conftest import LITERT_SIDE, small_random_model

pytest.importorskip("litert_torch", reason="--target litert needs litert-torch (grw-edge[litert])")
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

SIDE = LITERT_SIDE


@pytest.fixture(scope="module")
def model():
    return small_random_model("movineta0s", 5)  # the weights of conftest's litert_artifact


@pytest.fixture(scope="module")
def artifact(litert_artifact):
    return litert_artifact


def manifest_of(path):
    return json.loads((path / "manifest.json").read_text())


def test_signatures_carry_the_manifest_names(artifact):
    manifest = manifest_of(artifact)
    step = Interpreter(model_path=str(artifact / "step.tflite")).get_signature_list()
    assert list(step) == ["step"]
    assert sorted(step["step"]["inputs"]) == sorted(
        ["frames", *(s["input"] for s in manifest["states"])])
    assert sorted(step["step"]["outputs"]) == sorted(
        ["embeddings", *(s["output"] for s in manifest["states"])])
    assert manifest["states"][1]["input"] == "blocks_b1_l0_deep_buffer"
    assert manifest["input"]["layout"] == "NTHWC" and manifest["input"]["shape"] == [1, 1, SIDE, SIDE, 3]
    assert manifest["states"][1]["permute"] == [0, 1, 3, 4, 2]  # channels last, as XNNPACK
    assert manifest["states"][1]["output"] == "blocks_b1_l0_deep_buffer_next"
    head = Interpreter(model_path=str(artifact / "head.tflite")).get_signature_list()
    assert sorted(head["head"]["inputs"]) == ["embeddings", "mask"]
    assert head["head"]["outputs"] == ["logits"]
    assert manifest["head"]["shape"] == [1, 50, 64]
    assert manifest["target"] == "litert" and manifest["precision"] == "fp32"
    assert manifest["parity"]["passed"] and manifest["parity"]["long_stream"]["top1_agreement"] == 1
    assert manifest["parity"]["max_abs_embeddings"] <= 1e-4
    assert manifest["selftest"]["measured_at_export"]["on"] == "litert"
    assert {"step.tflite", "head.tflite", "selftest.bin", "labels.txt"} <= set(manifest["files"])


def test_xnnpack_runs_every_operator_of_the_step(artifact):
    assert xnnpack_outside(artifact / "step.tflite") == []
    step = Interpreter(model_path=str(artifact / "step.tflite"))
    assert "TRANSPOSE" not in {op["op_name"] for op in step._get_ops_details()}
    assert manifest_of(artifact)["step"]["xnnpack_outside"] == {}


def test_the_delegation_check_sees_operators_xnnpack_lacks(tmp_path):
    """The old counter's operators (a cumulative sum, a comparison cast to float) stay out."""

    class Counter(torch.nn.Module):
        def forward(self, **inputs):
            digits = inputs["digits"]
            return {"next": torch.cumsum(digits, dim=1) + (digits == 31).float()}

    path = tmp_path / "counter.tflite"
    convert(litert_torch(), Counter(), "counter", {"digits": torch.zeros(1, 5)}, path)
    assert "CUMSUM" in xnnpack_outside(path)


def test_the_session_agrees_with_the_reference_and_keeps_its_contract(artifact, model):
    session = open_session(artifact, threads=1)
    assert isinstance(session, LiteRTSession)
    assert session.self_test().passed
    clip = torch.rand(1, 7, 3, SIDE, SIDE)
    with torch.no_grad():
        reference = model.video_backbone(clip)
        partial = model.classify(reference)  # 7 frames: fewer than the head's 50
    embeddings = session.embed_clip(clip.transpose(1, 2).numpy())
    assert np.abs(embeddings - reference.numpy()).max() <= 1e-4
    assert np.abs(session.classify() - partial.numpy()).max() <= 1e-3
    states = session.states()
    assert states["frame_count"].tolist() == [[7, 0, 0, 0, 0]]
    session.start_from(states)  # read back and set through the layouts: unchanged
    assert all(np.array_equal(session.states()[k], v) for k, v in states.items())
    before = session.states()
    bad = {**before, "blocks.b1_l0.deep.buffer": before["blocks.b1_l0.deep.buffer"] * np.inf}
    session.start_from(bad)
    with pytest.raises(NonFiniteOutputError):
        session.push(np.zeros((3, SIDE, SIDE), np.float32))
    assert session.faults == 1
    session.start_from(before)
    session.push(np.zeros((3, SIDE, SIDE), np.float32))
    assert session.states()["frame_count"].tolist() == [[8, 0, 0, 0, 0]]
    session.set_window(51)
    for _ in range(51):
        session.push(np.zeros((3, SIDE, SIDE), np.float32))
    with pytest.raises(InputShapeError, match="at most 50 frames"):
        session.classify()


def test_verify_reads_litert_artifacts(artifact):
    report = verify_artifact(artifact, clips=1, frames=6)
    assert report.backend == "litert" and report.failures() == []


def test_a_failed_export_leaves_nothing(model, tmp_path, monkeypatch):
    def broken(*_, **__):
        raise RuntimeError("converter exploded")

    monkeypatch.setattr(litert_exporter, "write_models", broken)
    with pytest.raises(RuntimeError):
        export(model, "litert", tmp_path / "out", resolution=SIDE)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ExportError, match="--fused is an ONNX option"):
        export(model, "litert", tmp_path / "out", fused=True)


def test_missing_or_unsupported_converter_is_one_line(monkeypatch):
    monkeypatch.setattr(torch, "__version__", "2.99.0")
    with pytest.raises(BackendUnavailableError, match=r"converts models of torch<2\.15"):
        litert_torch()

    def absent(name):
        raise litert_exporter.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(litert_exporter.importlib.metadata, "requires", absent)
    with pytest.raises(BackendUnavailableError, match=r"pip install 'grw-edge\[litert\]'"):
        litert_torch()


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_reduced_precision_stays_in_xnnpack_with_float_states(model, tmp_path, precision):
    path = export(model, "litert", tmp_path / precision, resolution=SIDE, precision=precision,
                  calibration_clips=2, parity_clips=4, parity_frames=8)
    manifest = manifest_of(path)
    assert manifest["parity"]["passed"] and manifest["parity"]["top1_agreement"] >= 0.99
    assert xnnpack_outside(path / "step.tflite") == []
    step = Interpreter(model_path=str(path / "step.tflite"))
    details = step.get_signature_runner("step").get_input_details()
    assert {d["dtype"] for d in details.values()} == {np.float32}  # no requantizing per frame
    tensors = {t["name"]: t["dtype"] for t in step.get_tensor_details()}
    wanted = np.float16 if precision == "fp16" else np.int8
    assert sum(dtype == wanted for dtype in tensors.values()) >= 20
    assert open_session(path, threads=1).self_test().passed
    if precision == "int8":
        assert manifest["precision_details"]["calibration_steps"] == 2 * 50


def test_depthwise_conv3d_as_temporal_taps_is_the_same_convolution():
    """LiteRT's converter crashes on grouped 3D convolutions; the whole-clip (A3B) export
    writes each as the sum of depthwise 2D convolutions over its temporal taps."""
    conv = torch.nn.Conv3d(6, 6, (5, 3, 3), stride=(1, 2, 2), padding=(2, 0, 0), groups=6)
    holder = torch.nn.Sequential(conv)
    split = litert_exporter.split_depthwise_conv3d_(holder)
    assert isinstance(split[0], litert_exporter.TemporalTaps) and len(split[0].taps) == 5
    x = torch.randn(2, 6, 7, 9, 9)
    with torch.no_grad():
        assert (split(x) - conv(x)).abs().max() <= 1e-5


def test_a_static_clip_selftest_holds_the_whole_clip_in_small_frames(artifact):
    """A LiteRT whole-clip graph takes exactly frames_per_clip frames: its self-test holds a
    whole clip, at a size that keeps the file as small as 8 camera frames."""
    from grw_edge.exporters.selftest import CAMERA_SIZE, SELFTEST_FRAMES, frame_count, frame_size
    from grw_edge_runtime.manifest import read_manifest

    clip = read_manifest(artifact)
    clip.mode = "clip"
    clip.input.update(shape=[1, 3, 120, SIDE, SIDE], layout="NCTHW")
    assert frame_count(clip) == 120
    height, width = frame_size(120)
    assert 120 * height * width <= SELFTEST_FRAMES * CAMERA_SIZE[0] * CAMERA_SIZE[1]
    assert frame_count(read_manifest(artifact)) == SELFTEST_FRAMES  # streaming: unchanged
