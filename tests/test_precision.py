"""FP16 and INT8 ONNX artifacts: conversion, calibration, the per-precision bars, refusals."""
import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from grw_edge import tolerances
from grw_edge.errors import ParityError
from grw_edge.exporters import export
from grw_edge.exporters.precision import convert_to_fp16
from grw_edge.exporters.selftest import SELFTEST_MARGIN
from grw_edge.exporters.tensorrt import tensorrt_problems
from grw_edge.verify import precision_failures, verify_artifact
from tests.conftest import small_random_model

SMALL = {"resolution": 48, "parity_frames": 6, "parity_clips": 3}


@pytest.fixture(scope="module")
def model():
    return small_random_model("movineta0s")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from grw_edge.data.synthetic import make_synthetic_dataset

    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic_dataset(root, videos_per_class=2, test_videos_per_class=2, frames=8, size=48)
    return root


def io_types(path) -> set[int]:
    graph = onnx.load(str(path)).graph
    return {v.type.tensor_type.elem_type for v in [*graph.input, *graph.output]}


def test_fp16_artifact_computes_in_half_with_float32_io(model, tmp_path):
    path = export(model, "onnx", tmp_path / "fp16", precision="fp16", fused=True, **SMALL)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["precision"] == "fp16"
    assert manifest["precision_details"]["compute"] == "float16"
    for graph in ("step.onnx", "head.onnx", "fused.onnx"):
        assert io_types(path / graph) == {TensorProto.FLOAT}
        weights = onnx.load(str(path / graph)).graph.initializer
        assert any(w.data_type == TensorProto.FLOAT16 for w in weights)
    parity = manifest["parity"]
    assert parity["precision"] == "fp16" and parity["passed"]
    assert parity["top1_agreement"] >= tolerances.FP16_TOP1_AGREEMENT
    assert 0 < parity["max_abs_embeddings"] < 1e-2  # half precision is not bit-exact
    report = verify_artifact(path, clips=2, frames=6)
    assert report.precision == "fp16" and report.failures() == []
    assert report.self_test["passed"]  # verify runs the artifact's self-test too
    assert_self_test_tolerance_from_measurement(manifest)
    assert "onnxruntime" not in manifest["precision_details"]  # no optimizer to turn off
    # every graph opens with all of onnxruntime's optimisations (a crash would end this
    # process, so each opens in one of its own)
    opener = ("import sys, onnxruntime as ort; ort.InferenceSession(sys.argv[1], "
              "providers=['CPUExecutionProvider'])")
    for graph in ("step.onnx", "head.onnx", "fused.onnx"):
        done = subprocess.run([sys.executable, "-c", opener, str(path / graph)],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, (graph, done.returncode, done.stderr[-300:])


def test_fp16_io_puts_half_precision_at_the_graph_boundary(model, tmp_path):
    import grw_edge.runtimes as runtimes

    path = export(model, "onnx", tmp_path / "fp16io", precision="fp16", fp16_io=True, **SMALL)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["input"]["dtype"] == "float16" and manifest["head"]["dtype"] == "float16"
    assert {s["dtype"] for s in manifest["states"]} == {"float16"}
    assert io_types(path / "step.onnx") == io_types(path / "head.onnx") == {TensorProto.FLOAT16}
    assert manifest["parity"]["passed"]
    session = runtimes.open(path)
    embeddings = session.push(np.zeros((60, 80, 3), np.uint8))
    assert embeddings.dtype == np.float32 and session.classify().dtype == np.float32
    torch_session = runtimes.open(path, "torch")  # the reference ignores the artifact's dtypes
    assert np.abs(torch_session.push(np.zeros((60, 80, 3), np.uint8)) - embeddings).max() < 1e-2
    assert session.self_test().passed


def dequantized_inputs(graph: onnx.GraphProto, op_type: str) -> list[bool]:
    """For each ``op_type`` node: is its data input the output of a DequantizeLinear?"""
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    return [n.input[0] in dequantized for n in graph.node if n.op_type == op_type]


def test_int8_for_the_cpu_quantizes_every_convolution_and_meets_its_bar(model, videos,
                                                                         tmp_path):
    path = export(model, "onnx", tmp_path / "int8cpu", precision="int8",
                  calibration_data=str(videos), calibration_clips=4,
                  parity_videos=str(videos), **SMALL)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["precision_details"]["activations"].startswith("uint8 asymmetric")
    # measured slower than fp32 on onnxruntime's CPU provider: the artifact says so
    assert "slower than fp32" in manifest["precision_details"]["note"]
    step = onnx.load(str(path / "step.onnx")).graph
    convs = dequantized_inputs(step, "Conv")
    assert len(convs) > 40 and all(convs)  # depthwise too: no float convolution is left
    assert "HardSwish" in {n.op_type for n in step.node}  # whole: one float island, not two
    parity = manifest["parity"]
    assert parity["passed"] and parity["problems"] == [] and parity["clips"] >= 8
    assert parity["top1_agreement"] >= 1 - tolerances.INT8_TOP1_DROP_POINTS / 100


def test_int8_for_tensorrt_is_symmetric_qdq_calibrated_on_videos(model, videos, tmp_path,
                                                                   monkeypatch):
    # an unreachable bar: --allow-degraded must still write the artifact and say why
    monkeypatch.setattr(tolerances, "INT8_TOP1_DROP_POINTS", -1.0)
    path = export(model, "tensorrt", tmp_path / "int8", precision="int8", allow_degraded=True,
                  calibration_data=str(videos), calibration_clips=4, **SMALL)
    manifest = json.loads((path / "manifest.json").read_text())
    details = manifest["precision_details"]
    assert 0 < details["calibration_steps"] <= 4 * manifest["frames_per_clip"]
    assert str(videos) in details["calibration"] and details["float32"] == ["head.onnx"]
    assert "note" not in details  # TensorRT's INT8 kernels are what int8 is for
    step = onnx.load(str(path / "step.onnx"))
    ops = [node.op_type for node in step.graph.node]
    assert ops.count("QuantizeLinear") > 20 and ops.count("DequantizeLinear") > 20
    assert "QuantizeLinear" not in {n.op_type for n in onnx.load(str(path / "head.onnx")).graph.node}
    assert io_types(path / "step.onnx") == {TensorProto.FLOAT}
    assert tensorrt_problems(step) == []  # symmetric: zero points are all zero
    parity = manifest["parity"]
    assert parity["precision"] == "int8" and not parity["passed"]
    assert "agreement" in parity["problems"][0] and "int8" in parity["problems"][0]
    report = verify_artifact(path, videos=videos, frames=6, backend="onnxruntime")
    assert report.precision == "int8" and report.clips == 12
    assert report.self_test["passed"], report.self_test
    assert_self_test_tolerance_from_measurement(manifest)


def assert_self_test_tolerance_from_measurement(manifest):
    """Reduced precision: the self-test tolerates the difference measured at export, with
    the margin, and never less than the float32 bars."""
    selftest = manifest["selftest"]
    measured, tolerance = selftest["measured_at_export"], selftest["tolerance"]
    assert measured["on"] == "onnxruntime"
    for name, bar in (("embeddings", 1e-4), ("logits", 1e-3)):
        assert tolerance[name] >= max(bar, SELFTEST_MARGIN * measured[name])
        assert tolerance[name] <= max(bar, 1.1 * SELFTEST_MARGIN * measured[name])


def test_a_reduced_precision_artifact_below_the_bar_is_refused(model, tmp_path, monkeypatch):
    monkeypatch.setattr(tolerances, "FP16_TOP1_AGREEMENT", 1.01)  # no artifact can pass
    with pytest.raises(ParityError, match="--allow-degraded"):
        export(model, "onnx", tmp_path / "refused", precision="fp16", **SMALL)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_precision_bars_follow_design():
    assert precision_failures("fp16", top1_agreement=0.99, max_abs_logits=1.0) == []
    assert precision_failures("fp16", top1_agreement=0.98, max_abs_logits=0.0)
    assert precision_failures("int8", top1_agreement=0.5, max_abs_logits=1.0,
                              top1_drop_points=0.9) == []
    assert precision_failures("int8", top1_agreement=1.0, max_abs_logits=0.0,
                              top1_drop_points=1.5)
    # without labels the drop is bounded by the disagreement rate
    assert precision_failures("int8", top1_agreement=0.985, max_abs_logits=0.0)
    assert precision_failures("fp32", top1_agreement=1.0, max_abs_logits=2e-3)


def test_fp16_conversion_keeps_outputs_that_the_graph_also_reads(tmp_path):
    """A state's next value is returned and used again inside the step."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"]),
                               helper.make_node("Div", ["y", "x"], ["z"])], "g", [x], [y, z])
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    convert_to_fp16(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    data = np.arange(1, 7, dtype=np.float32).reshape(2, 3)
    doubled, ratio = session.run(None, {"x": data})
    assert doubled.dtype == np.float32 and np.allclose(doubled, 2 * data)
    assert np.allclose(ratio, 2.0)
