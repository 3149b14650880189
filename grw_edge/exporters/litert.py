"""LiteRT target: ``step.tflite`` and ``head.tflite`` for LiteRT (Android, LiteRT.js, CPU boxes).

The inference-folded model is converted with litert-torch.  Every tensor of a signature is
named after the manifest: the step's signature ``step`` takes ``frames`` and each state
under its input name and returns ``embeddings`` and each next state under its output name
(names are identifiers: a state's dots become underscores, ``_next`` marks the output);
the head's signature ``head`` maps ``embeddings`` and ``mask`` to ``logits``.

The streaming step computes channels last, as XNNPACK does, so the graph holds no
transposes: frames are (B, t, R, R, 3) (``input.layout`` NTHWC) and the frames-first states
(B, T, C, H, W) are (B, T, H, W, C) (each state's ``permute``).  LiteRT graphs have static
shapes: the head takes a window of ``frames_per_clip``
embeddings and a ``mask`` (B, N) marking the first n <= N rows as frames (the logits are
those of the n frames alone), and a base backbone's whole-clip ``step.tflite`` takes clips
of exactly ``frames_per_clip`` frames.  Every operator of the streaming step is one that
XNNPACK runs (the counter, the SE memory and the pooling are written for it).
"""
from __future__ import annotations

import collections
import dataclasses
import importlib.metadata
import itertools
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from grw_edge._progress import Stages
from grw_edge.errors import BackendUnavailableError, ExportError
from grw_edge.exporters.artifact import (
    EMBEDDINGS_OUTPUT,
    FRAMES_INPUT,
    LOGITS_OUTPUT,
    ExportOptions,
    artifact_directory,
    base_manifest,
    check_and_seal,
    feature_name,
    write_common_files,
)
from grw_edge.exporters.precision import calibration_clips, step_feeds
from grw_edge.manifest import Manifest, StateEntry
from grw_edge.models.classifier import GrwVideoClassifier
from grw_edge.models.fusion import fold_for_inference
from grw_edge.models.movinet import to_channels_last_
from grw_edge_runtime.litert import LiteRTSession, quiet_native_output, xnnpack_outside
from grw_edge.streaming import (
    ClassifierHead,
    ClipEmbedder,
    StreamingStep,
    initial_states,
    state_specs,
)

TARGET = "litert"
STEP_SIGNATURE = "step"
HEAD_SIGNATURE = "head"
NEXT_SUFFIX = "_next"
MASK_INPUT = "mask"
CHANNELS_LAST = [0, 1, 3, 4, 2]  # a frames-first state (B, T, C, H, W) as (B, T, H, W, C)
# int8: the operators whose weights and activations are quantized; the rest stays float32,
# so states, the counter and the SE memory keep their precision over long streams.  The
# depthwise convolutions stay float32 too: XNNPACK's int8 depthwise kernels ran slower than
# its float ones (A0S 172 px, Xeon: the step took 0.80x float32's time without them, 0.89x
# with them)
INT8_OPERATIONS = ("CONV_2D", "FULLY_CONNECTED")
FP16_WEIGHTS = [{"regex": ".*", "operation": "*", "algorithm_key": "float_casting",
                 "op_config": {"weight_tensor_config": {"num_bits": 16, "dtype": "FLOAT"},
                               "compute_precision": "FLOAT", "explicit_dequantize": True}}]


class NamedStep(nn.Module):
    """The streaming step with keyword inputs and a dict of outputs: litert-torch names a
    signature's tensors after them."""

    def __init__(self, step: StreamingStep, states: Sequence[StateEntry]) -> None:
        super().__init__()
        self.step = step
        self.states = list(states)

    def forward(self, **inputs: Tensor) -> dict[str, Tensor]:
        embeddings, *next_states = self.step(inputs[FRAMES_INPUT],
                                             *(inputs[s.input] for s in self.states))
        return {EMBEDDINGS_OUTPUT: embeddings,
                **{s.output: value for s, value in zip(self.states, next_states)}}


class NamedOutput(nn.Module):
    """``module`` called with the keyword inputs in order, its one output under ``name``."""

    def __init__(self, module: nn.Module, name: str) -> None:
        super().__init__()
        self.module = module
        self.name = name

    def forward(self, **inputs: Tensor) -> dict[str, Tensor]:
        return {self.name: self.module(*inputs.values())}


class TemporalTaps(nn.Module):
    """A depthwise ``Conv3d`` (stride 1 in time) as the sum over its temporal taps of
    depthwise ``Conv2d`` on shifted frames: the same result, and LiteRT's converter crashes on
    grouped 3D convolutions."""

    def __init__(self, conv: nn.Conv3d) -> None:
        super().__init__()
        channels, _, taps, height, width = conv.weight.shape
        self.padding = conv.padding[0]
        self.taps = nn.ModuleList()
        for i in range(taps):
            tap = nn.Conv2d(channels, channels, (height, width), stride=conv.stride[1:],
                            padding=conv.padding[1:], groups=channels, bias=False)
            tap.weight = nn.Parameter(conv.weight[:, :, i].detach().clone())
            self.taps.append(tap)
        self.bias = conv.bias

    def forward(self, x: Tensor) -> Tensor:
        batch, _, frames = x.shape[:3]
        shifted = F.pad(x, (0, 0, 0, 0, self.padding, self.padding)).transpose(1, 2)
        y = self.taps[0](shifted[:, :frames].flatten(0, 1))
        for i, tap in enumerate(self.taps[1:], start=1):
            y = y + tap(shifted[:, i:i + frames].flatten(0, 1))
        y = y.unflatten(0, (batch, frames)).transpose(1, 2)
        return y if self.bias is None else y + self.bias.reshape(1, -1, 1, 1, 1)


def split_depthwise_conv3d_(model: nn.Module) -> nn.Module:
    """Replace every depthwise ``Conv3d`` of ``model`` by its :class:`TemporalTaps`."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if (isinstance(child, nn.Conv3d) and child.groups == child.in_channels > 1
                    and child.stride[0] == 1):
                setattr(module, name, TemporalTaps(child))
    return model


def export(model: GrwVideoClassifier, out: str | Path, options: ExportOptions) -> Path:
    """Write a LiteRT artifact for ``model`` to ``out`` and return its path."""
    options.validate()
    if options.fused:
        raise ExportError("--fused is an ONNX option; LiteRT artifacts hold step and head")
    if options.fp16_io:
        raise ExportError("--fp16-io does not apply to LiteRT: its fp16 artifacts store float16 "
                          "weights and keep float32 inputs, outputs and states")
    if not model.backbone_spec.causal:  # its graph takes whole clips of exactly this length
        options = dataclasses.replace(options, parity_frames=model.backbone_spec.frames_per_clip)
    converter = litert_torch()
    model = model.eval()
    reduced = options.precision != "fp32"
    stages = Stages(["step", "head", *([options.precision] if reduced else []), "parity",
                     "self-test"], desc="export")
    try:
        with artifact_directory(out, overwrite=options.overwrite) as staging:
            manifest = write_models(converter, model, staging, options, stages)
            write_common_files(model, staging, options)
            if reduced:
                stages.start(f"{options.precision} conversion")
                manifest.precision_details = reduce_precision(staging, manifest, options)
                stages.done()
            check_and_seal(model, staging, manifest, options, stages,
                           lambda: LiteRTSession(staging, manifest))
    finally:
        stages.close()
    return Path(out)


def litert_torch():
    """The litert-torch converter module, or one line saying what to install."""
    from packaging.requirements import Requirement

    try:
        requirements = [Requirement(line) for line in
                        importlib.metadata.requires("litert-torch") or []]
    except importlib.metadata.PackageNotFoundError:
        raise BackendUnavailableError("--target litert needs litert-torch: "
                                      "pip install 'grw-edge[litert]'") from None
    installed = torch.__version__.split("+")[0]
    for requirement in requirements:
        if requirement.name == "torch" and not requirement.specifier.contains(
                installed, prereleases=True):
            raise BackendUnavailableError(
                f"litert-torch {importlib.metadata.version('litert-torch')} converts models "
                f"of torch{requirement.specifier}, not torch {torch.__version__}: install a "
                f"torch in that range for --target litert")
    with quiet_native_output():
        import litert_torch as converter
    converter.config.show_progress = False
    return converter


def write_models(converter, model: GrwVideoClassifier, directory: Path, options: ExportOptions,
                 stages: Stages) -> Manifest:
    """Convert the step (or whole-clip model) and the head; return the manifest."""
    folded = fold_for_inference(model)
    spec = model.backbone_spec
    side = options.resolution or spec.resolution
    batch, t = options.batch, options.frames_per_step
    embed_dim, window = model.head_config.embed_dim, spec.frames_per_clip
    states: list[StateEntry] = []
    stages.start("LiteRT step")
    if spec.causal:  # channels last, as XNNPACK computes: no transposes in the graph
        to_channels_last_(folded.video_backbone.encoder)
        specs = state_specs(folded.video_backbone, batch=batch, resolution=side,
                            frames_per_step=t)
        states = [StateEntry(s.name, feature_name(s.name), feature_name(s.name) + NEXT_SUFFIX,
                             list(s.shape), s.dtype, s.init,
                             CHANNELS_LAST if len(s.shape) == 5 else None) for s in specs]
        step = NamedStep(StreamingStep(folded.video_backbone, specs), states)
        inputs = {FRAMES_INPUT: torch.zeros(batch, t, side, side, 3),
                  **{s.input: value for s, value in zip(states, initial_states(specs))}}
        convert(converter, step, STEP_SIGNATURE, inputs, directory / "step.tflite")
    else:
        split_depthwise_conv3d_(folded.video_backbone)
        convert(converter, NamedOutput(ClipEmbedder(folded.video_backbone), EMBEDDINGS_OUTPUT),
                STEP_SIGNATURE, {FRAMES_INPUT: torch.zeros(batch, 3, window, side, side)},
                directory / "step.tflite")
    stages.done()
    stages.start("LiteRT head")
    convert(converter, NamedOutput(ClassifierHead(folded), LOGITS_OUTPUT), HEAD_SIGNATURE,
            {EMBEDDINGS_OUTPUT: torch.zeros(batch, window, embed_dim),
             MASK_INPUT: torch.ones(batch, window)}, directory / "head.tflite")
    stages.done()
    manifest = base_manifest(
        model, target=TARGET, options=options, states=states,
        step={"file": "step.tflite", "signature": STEP_SIGNATURE,
              "outputs": {"embeddings": EMBEDDINGS_OUTPUT}},
        head={"file": "head.tflite", "signature": HEAD_SIGNATURE, "input": EMBEDDINGS_OUTPUT,
              "mask": MASK_INPUT, "output": LOGITS_OUTPUT, "shape": [batch, window, embed_dim]})
    if spec.causal:
        manifest.input.update(shape=[batch, t, side, side, 3], layout="NTHWC")
    else:
        manifest.input["shape"][2] = window  # whole clips of exactly this many frames
    manifest.step["xnnpack_outside"] = operator_counts(xnnpack_outside(directory / "step.tflite"))
    return manifest


def convert(converter, module: nn.Module, signature: str, inputs: dict[str, Tensor],
            path: Path) -> None:
    """Convert ``module`` called with keyword ``inputs`` into a one-signature .tflite file."""
    with quiet_native_output(), torch.no_grad():
        try:
            (converter.Converter()
             .signature(signature, module.eval(), sample_kwargs=inputs)
             .convert()
             .export(str(path)))
        except Exception as error:  # the converter raises many kinds, from many layers
            reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise ExportError(f"converting {path.name} with litert-torch failed: "
                              f"{type(error).__name__}: {reason}") from error


def operator_counts(names: list[str]) -> dict[str, int]:
    """How many of each operator, by name: what the manifest records of a delegation."""
    return dict(sorted(collections.Counter(names).items()))


def reduce_precision(directory: Path, manifest: Manifest, options: ExportOptions) -> dict:
    """Rewrite the float32 models with ai-edge-quantizer: fp16 stores the weights of step and
    head as float16; int8 quantizes the step's full convolutions and matrix products."""
    from ai_edge_quantizer import qtyping, quantizer

    step = directory / manifest.step["file"]
    if options.precision == "fp16":
        for path in (step, directory / manifest.head["file"]):
            model = quantizer.Quantizer(str(path))
            model.load_quantization_recipe(FP16_WEIGHTS)
            _write_quantized(model, None, path)
        return {"weights": "float16", "io": "float32",
                "compute": "float32 on XNNPACK (weights widened once at load), float16 on "
                           "GPU delegates",
                "graphs": [manifest.step["file"], manifest.head["file"]]}
    skipped: list[str] = []
    clips, source = calibration_clips(manifest, options, skipped)
    with quiet_native_output():
        from ai_edge_litert.interpreter import Interpreter

        run = Interpreter(model_path=str(step)).get_signature_runner(manifest.step["signature"])
    if manifest.mode == "streaming":
        feeds = step_feeds(lambda feed: run(**feed), manifest, clips)
    else:
        feeds = ({manifest.input["name"]: clip} for clip in clips)
    model = quantizer.Quantizer(str(step))
    for operation in INT8_OPERATIONS:
        model.add_static_config(regex=".*", operation_name=getattr(qtyping.TFLOperationName,
                                                                   operation),
                                activation_num_bits=8, weight_num_bits=8)
    calibration, steps = None, 0
    per_clip = manifest.frames_per_clip // max(manifest.frames_per_step, 1)
    while chunk := list(itertools.islice(feeds, per_clip)):  # the quantizer lists its data:
        with quiet_native_output():                          # a clip at a time bounds memory
            calibration = model.calibrate({manifest.step["signature"]: chunk},
                                          previous_calibration_result=calibration)
        steps += len(chunk)
    if not steps:
        raise ExportError("INT8 calibration saw no frames: the calibration clips were empty")
    _write_quantized(model, calibration, step)
    manifest.step["xnnpack_outside"] = operator_counts(xnnpack_outside(step))
    return {"weights": "int8 symmetric per channel",
            "activations": "int8 per tensor, min/max calibrated on streamed frames and states",
            "ops": list(INT8_OPERATIONS), "io": "float32 (frames, states, embeddings)",
            "float32": ["the depthwise and temporal convolutions, the counter, SE memory, "
                        "pooling and activations", manifest.head["file"]],
            "graphs": [manifest.step["file"]], "calibration": source,
            "calibration_steps": steps, "calibration_unreadable": skipped}


def _write_quantized(model, calibration, path: Path) -> None:
    """Quantize ``model`` (an ai-edge-quantizer Quantizer) and write it over ``path``."""
    try:
        with quiet_native_output():
            model.quantize(calibration, enable_progress_report=False).export_model(
                str(path), overwrite=True)
    except (ValueError, RuntimeError) as error:
        raise ExportError(f"quantizing {path.name} failed: {type(error).__name__}: "
                          f"{str(error).splitlines()[0]}") from error
