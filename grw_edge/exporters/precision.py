"""Reduced-precision ONNX graphs: FP16 conversion and INT8 static quantization (QDQ).

Both rewrite graphs the float32 exporter has written.  FP16 keeps every graph input and
output float32 by default, so an app feeds and keeps states exactly as for float32; the
casts sit inside the graph.  INT8 quantizes every convolution of the step (depthwise
included) and its matrix products, QDQ form, symmetric per-channel int8 weights,
activations calibrated by entropy on frames and states recorded while streaming
calibration clips.  Activations are asymmetric uint8 for ONNX Runtime's CPU provider (its
u8 x s8 kernels are the VNNI path; int8 x int8 ran the A0S step 1.8x slower) and
symmetric int8 for TensorRT (explicit quantization needs zero points of 0).  The head
stays float32 (it is small and its attention is the most range-sensitive part).
"""
from __future__ import annotations

import contextlib
import io
import itertools
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from grw_edge.errors import ExportError
from grw_edge.manifest import Manifest

INT8_OP_TYPES = ("Conv", "MatMul", "Gemm")
FP16_NOTE = ("fp16 is for GPUs (TensorRT, CUDA), Core ML and NNAPI-class accelerators; on "
             "onnxruntime's CPU provider it runs slower than fp32 (x86 CPUs compute it "
             "through casts to float32): use fp32 there")
INT8_NOTE = ("int8 is for TensorRT and NNAPI/QNN-class accelerators; on onnxruntime's CPU "
             "provider it runs slower than fp32 (no quantized HardSwish, so every convolution "
             "sits between a dequantize and a quantize): use fp32 there")
VALUE_SUFFIX = "__value"


def expose_graph_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every graph output that nodes also consume its own Identity node.

    A state's next value is both returned and used later in the step; converters that put
    casts at the graph boundary need the returned copy separate from the one used inside.
    """
    outputs = {output.name for output in model.graph.output}
    consumed = {name for node in model.graph.node for name in node.input}
    for name in sorted(outputs & consumed):
        inner = name + VALUE_SUFFIX
        for node in model.graph.node:
            node.output[:] = [inner if value == name else value for value in node.output]
            node.input[:] = [inner if value == name else value for value in node.input]
        model.graph.node.append(helper.make_node("Identity", [inner], [name],
                                                 name=f"expose_{name}"))
    return model


def convert_to_fp16(path: Path, *, keep_io_types: bool = True) -> None:
    """Rewrite the graph at ``path`` to compute in float16 (I/O float32 unless told not to)."""
    from onnxconverter_common import float16

    model = expose_graph_outputs(onnx.load(str(path)))
    for index, node in enumerate(model.graph.node):
        node.name = node.name or f"{node.op_type}_{index}"  # the converter names casts after nodes
    model.graph.ClearField("value_info")  # stale float32 annotations would contradict the casts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "value truncated to the fp16 range" for tiny weights
        converted = float16.convert_float_to_float16(model, keep_io_types=keep_io_types)
    _match_casts_to_declared_types(converted)
    onnx.checker.check_model(converted)
    onnx.save(converted, str(path))


def _match_casts_to_declared_types(model: onnx.ModelProto) -> None:
    """Casts to float32 inside the graph (e.g. positions computed from an integer range) must
    cast to float16 once the converter has declared their outputs float16."""
    declared = {info.name: info.type.tensor_type.elem_type for info in model.graph.value_info}
    for node in model.graph.node:
        if node.op_type != "Cast" or declared.get(node.output[0]) != onnx.TensorProto.FLOAT16:
            continue
        for attribute in node.attribute:
            if attribute.name == "to" and attribute.i == onnx.TensorProto.FLOAT:
                attribute.i = onnx.TensorProto.FLOAT16


def calibration_clips(manifest: Manifest, options, skipped: list[str]
                      ) -> tuple[Iterator[np.ndarray], str]:
    """The clips INT8 calibrates on, (B, 3, N, R, R) float32: the first clip of every video
    under ``options.calibration_data``, or random frames; and a line saying which."""
    from grw_edge.verify import random_clips, video_clips

    frames = manifest.frames_per_clip
    if options.calibration_data:
        if manifest.batch != 1:
            raise ExportError("--calibration-data needs --batch 1 (videos are one clip each)")
        clips = video_clips(manifest, options.calibration_data, frames, skipped)
        source = f"first clips of the videos under {options.calibration_data}"
    else:
        clips = random_clips(manifest, options.calibration_clips, frames, options.seed + 1)
        source = ("uniform random frames: calibrate on real clips (--calibration-data) "
                  "before deploying")
    return (clip.transpose(1, 2).numpy()
            for clip in itertools.islice(clips, options.calibration_clips)), source


def step_feeds(run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
               manifest: Manifest, clips: Iterable[np.ndarray]
               ) -> Iterator[dict[str, np.ndarray]]:
    """Every input the float32 step sees while streaming ``clips`` (B, 3, N, R, R) from the
    initial states: the frames of each step with the states that go with them.  ``run``
    runs the step on a feed and returns its outputs by name."""
    frames_name, t = manifest.input["name"], manifest.frames_per_step
    for clip in clips:
        states = {s.input: np.full(s.shape, s.init, dtype=np.float32) for s in manifest.states}
        for start in range(0, clip.shape[2] - t + 1, t):
            frames = manifest.in_input_layout(clip[:, :, start:start + t])
            feed = {frames_name: np.ascontiguousarray(frames), **states}
            yield feed
            results = run(feed)
            states = {s.input: results[s.output] for s in manifest.states}


def quantize_to_int8(path: Path, feeds: Iterable[dict[str, np.ndarray]], *,
                     symmetric_activations: bool) -> dict:
    """Quantize the graph at ``path`` in place (QDQ) calibrated on ``feeds``; activations
    int8 symmetric (TensorRT) or uint8 asymmetric (ONNX Runtime CPU)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter(feeds)
            self.count = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            feed = next(self.feeds, None)
            self.count += feed is not None
            return feed

    reader = Reader()
    activations = QuantType.QInt8 if symmetric_activations else QuantType.QUInt8
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # no ORT optimisation here: it splits HardSwish into HardSigmoid and Mul, two float
        # islands (and two dequantisations) per convolution instead of one
        quant_pre_process(str(path), str(prepared), skip_symbolic_shape=True,
                          skip_optimization=True)
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # histogram chatter
                quantize_static(str(prepared), str(path), reader, quant_format=QuantFormat.QDQ,
                                activation_type=activations, weight_type=QuantType.QInt8,
                                per_channel=True, op_types_to_quantize=list(INT8_OP_TYPES),
                                calibrate_method=CalibrationMethod.Entropy,
                                extra_options={"ActivationSymmetric": symmetric_activations,
                                               "WeightSymmetric": True})
        except Exception as error:
            raise ExportError(f"INT8 quantization of {path.name} failed: "
                              f"{type(error).__name__}: {str(error).splitlines()[0]}") from error
    if not reader.count:
        raise ExportError("INT8 calibration saw no frames: the calibration clips were empty")
    onnx.checker.check_model(onnx.load(str(path)))
    kind = "int8 symmetric" if symmetric_activations else "uint8 asymmetric"
    return {"format": "QDQ", "activations": f"{kind}, entropy calibration",
            "weights": "int8 symmetric per channel", "ops": list(INT8_OP_TYPES),
            "calibration_steps": reader.count}
