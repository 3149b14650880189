"""Core ML target: conversion, spec names and shapes, state I/O, metadata; prediction and
parity on macOS only."""
import json
import platform

import pytest

from grw_edge.errors import BackendUnavailableError, ExportError
from grw_edge.exporters import export
from tests.conftest import small_random_model

ct = pytest.importorskip("coremltools", reason="the coreml extra is not installed")

ON_MAC = platform.system() == "Darwin"


@pytest.fixture(scope="module")
def model():
    return small_random_model("movineta0s")


@pytest.fixture(scope="module")
def explicit(model, tmp_path_factory):
    return export(model, "coreml", tmp_path_factory.mktemp("coreml") / "a0s", resolution=48,
                  parity_frames=4)


def spec_of(path):
    return ct.utils.load_spec(str(path))


def features(description):
    return {f.name: list(f.type.multiArrayType.shape) for f in description}


def test_step_and_head_packages_name_every_state(explicit):
    manifest = json.loads((explicit / "manifest.json").read_text())
    assert manifest["target"] == "coreml" and manifest["step"]["file"] == "step.mlpackage"
    step = spec_of(explicit / "step.mlpackage")
    inputs, outputs = features(step.description.input), features(step.description.output)
    assert list(inputs) == ["frames", *(s["input"] for s in manifest["states"])]
    assert list(outputs) == ["embeddings", *(s["output"] for s in manifest["states"])]
    assert inputs["frames"] == [1, 3, 1, 48, 48]
    for state in manifest["states"]:
        assert inputs[state["input"]] == state["shape"] == outputs[state["output"]]
        assert "." not in state["input"] and "." not in state["output"]
    assert manifest["states"][0]["input"].startswith("blocks_b0_l0_")
    assert manifest["states"][-1]["input"] == "frame_count"
    assert len(manifest["states"]) == 27
    head = spec_of(explicit / "head.mlpackage")
    assert [f.name for f in head.description.input] == ["embeddings"]
    window = head.description.input[0].type.multiArrayType.shapeRange.sizeRanges[1]
    assert (window.lowerBound, window.upperBound) == (1, 50)


def test_metadata_carries_labels_preprocessing_and_source(explicit):
    head = spec_of(explicit / "head.mlpackage")
    meta = head.description.metadata.userDefined
    assert json.loads(meta["grw_edge.labels"])[0] == "abseiling"
    assert json.loads(meta["grw_edge.preprocess"])["center_crop"] == [48, 48]
    assert meta["grw_edge.backbone"] == "movineta0s" and meta["grw_edge.weights"] == "random-init"
    assert "GRW-smoothed movineta0s" in head.description.metadata.shortDescription
    manifest = json.loads((explicit / "manifest.json").read_text())
    if not ON_MAC:
        assert manifest["parity"] == {"measured": False, "reason": manifest["parity"]["reason"]}
        assert "macOS" in manifest["parity"]["reason"]


def test_fp16_stateful_package_keeps_states_inside(model, tmp_path):
    out = export(model, "coreml", tmp_path / "stateful", resolution=48, parity_frames=4,
                 precision="fp16", stateful=True, minimum_deployment_target="iOS18")
    step = spec_of(out / "step.mlpackage")
    assert [f.name for f in step.description.input] == ["frames"]
    assert [f.name for f in step.description.output] == ["embeddings"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert {s.name for s in step.description.state} == {s["input"] for s in manifest["states"]}
    assert manifest["step"]["stateful"] and manifest["precision"] == "fp16"
    assert {s["dtype"] for s in manifest["states"]} == {"float16"}
    assert step.specificationVersion >= 9  # iOS 18
    selftest = manifest["selftest"]
    assert selftest["frames"]["shape"] == [8, 240, 320, 3]
    assert set(manifest["files"]) >= {"selftest.bin", "step.mlpackage/Manifest.json"}
    if not ON_MAC:  # Core ML cannot run here: fp16 tolerance from the reference in float16
        assert "float16" in selftest["measured_at_export"]["on"]
        assert selftest["tolerance"]["logits"] >= 4 * selftest["measured_at_export"]["logits"]


def test_refusals_are_clear(model, tmp_path):
    with pytest.raises(ExportError, match="int8 is available for the onnx and tensorrt"):
        export(model, "coreml", tmp_path / "x", precision="int8", resolution=48)
    with pytest.raises(ExportError, match="iOS18 or macOS15"):
        export(model, "coreml", tmp_path / "y", stateful=True, precision="fp16", resolution=48)
    with pytest.raises(ExportError, match="needs --precision fp16"):
        export(model, "coreml", tmp_path / "z", stateful=True, resolution=48,
               minimum_deployment_target="iOS18")
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(ON_MAC, reason="Core ML runs here")
def test_the_session_says_core_ml_needs_macos(explicit):
    import grw_edge.runtimes as runtimes

    with pytest.raises(BackendUnavailableError, match="only on macOS"):
        runtimes.open(explicit)


@pytest.mark.macos
@pytest.mark.skipif(not ON_MAC, reason="Core ML prediction needs macOS")
def test_core_ml_streams_like_the_reference(explicit):
    from grw_edge.verify import verify_artifact

    report = verify_artifact(explicit, clips=2, frames=6)
    assert report.backend == "coreml" and report.failures() == [], report
