"""TensorRT target: TensorRT-readiness of the graphs, the no-GPU artifact and message,
and (on a GPU with TensorRT) engine parity."""
import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

import grw_edge.runtimes as runtimes
from grw_edge.cli import cli
from grw_edge.errors import BackendUnavailableError
from grw_edge.exporters import export
from grw_edge.exporters.tensorrt import engine_unavailable_reason, tensorrt_problems
from grw_edge.verify import verify_artifact
from tests.conftest import small_random_model

NO_ENGINE = engine_unavailable_reason()


@pytest.mark.parametrize("name", ["movineta0s", "movineta1s", "movineta2s", "movineta3b"])
def test_every_backbones_graphs_are_tensorrt_ready(artifacts, name):
    for graph in ("step.onnx", "head.onnx", *(["fused.onnx"] if name == "movineta0s" else [])):
        assert tensorrt_problems(onnx.load(str(artifacts[name] / graph))) == []


def graph_with(node, inputs, outputs, initializers=()):
    graph = helper.make_graph([node], "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_the_readiness_check_names_what_tensorrt_lacks():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    unsupported = graph_with(helper.make_node("Hardmax", ["x"], ["y"]), [x], [y])
    assert "Hardmax" in tensorrt_problems(unsupported)[0]
    d = helper.make_tensor_value_info("d", TensorProto.DOUBLE, [4])
    assert "DOUBLE" in tensorrt_problems(graph_with(helper.make_node("Identity", ["d"], ["y"]),
                                                    [d], [y]))[0]
    q = helper.make_tensor_value_info("q", TensorProto.INT8, [4])
    zero = helper.make_tensor("zero", TensorProto.INT8, [], [3])
    scale = helper.make_tensor("scale", TensorProto.FLOAT, [], [0.1])
    asymmetric = graph_with(helper.make_node("QuantizeLinear", ["x", "scale", "zero"], ["q"]),
                            [x], [q], [scale, zero])
    assert "zero point" in " ".join(tensorrt_problems(asymmetric))
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [1, 1, 1, 1])
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 4, 4])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, 4, 4])
    runtime_weights = graph_with(helper.make_node("Conv", ["image", "w"], ["out"]),
                                 [image, w], [out])
    assert "constant" in " ".join(tensorrt_problems(runtime_weights))


@pytest.mark.skipif(NO_ENGINE is None, reason="this machine can build TensorRT engines")
def test_without_a_gpu_the_artifact_is_written_and_says_how_to_build(tmp_path):
    out = tmp_path / "a0s-trt"
    result = CliRunner().invoke(cli, ["export", "--backbone", "movineta0s", "--random-init",
                                      "--target", "tensorrt", "--resolution", "48",
                                      "--parity-frames", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    line = [line for line in result.output.splitlines() if "engine not built" in line]
    assert len(line) == 1 and f"grw-edge build-engine {out.name}" in line[0]
    assert "trtexec --onnx=step.onnx" in line[0]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["target"] == "tensorrt" and manifest["engine"]["built"] is False
    assert manifest["engine"]["reason"] == NO_ENGINE
    head_line = manifest["engine"]["trtexec"][1]
    assert "--minShapes=embeddings:1x1x256" in head_line and "--maxShapes=embeddings:1x50x256" \
        in head_line
    with pytest.raises(BackendUnavailableError, match="build-engine"):
        runtimes.open(out)
    report = verify_artifact(out, backend="onnxruntime", clips=1, frames=4)
    assert report.failures() == []  # the TensorRT-ready graphs themselves match
    built = CliRunner().invoke(cli, ["build-engine", str(out)])
    assert built.exit_code == 1 and "cannot build a TensorRT engine here" in built.output
    assert "Traceback" not in built.output
    assert json.loads((out / "manifest.json").read_text()) == manifest  # untouched


def test_target_options_are_checked(tmp_path):
    result = CliRunner().invoke(cli, ["export", "--backbone", "movineta0s", "--random-init",
                                      "--target", "onnx", "--stateful", "--out",
                                      str(tmp_path / "x")])
    assert result.exit_code == 1 and "--stateful does not apply to --target onnx" in \
        result.output
    result = CliRunner().invoke(cli, ["export", "--backbone", "movineta0s", "--random-init",
                                      "--target", "litert", "--batch", "2", "--dynamic-batch",
                                      "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "--dynamic-batch does not apply to --target litert" in \
        result.output


@pytest.mark.gpu
@pytest.mark.skipif(NO_ENGINE is not None, reason=f"TensorRT engines cannot be built here: "
                    f"{NO_ENGINE}")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_streams_like_the_reference(precision, tmp_path):
    out = export(small_random_model("movineta0s"), "tensorrt", tmp_path / precision,
                 precision=precision, resolution=64, parity_frames=8)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["engine"]["built"] and (out / manifest["engine"]["step"]).is_file()
    report = verify_artifact(out, clips=2, frames=8)
    assert report.backend == "tensorrt" and report.failures() == [], report
    session = runtimes.open(out)
    session.push(np.zeros((64, 64, 3), np.uint8))
    assert session.classify().shape == (1, 600)
