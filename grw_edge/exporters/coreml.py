"""Core ML target: the step and the head as ML Programs (``.mlpackage``).

States are explicit named inputs and outputs, as in the ONNX artifact, or with
``stateful=True`` Core ML state tensors that the model updates in place (iOS 18 / macOS 15
and later), so an app only passes the frame.  Core ML feature names must be identifiers,
so state names have their dots replaced; the manifest maps each state to its feature.
Converting works on any OS; running a model needs macOS, so the export-time parity check
runs there and is recorded as not measured elsewhere.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import platform
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from grw_edge._progress import Stages
from grw_edge.errors import BackendUnavailableError, ExportError
from grw_edge.exporters.artifact import (
    DYNAMIC,
    EMBEDDINGS_OUTPUT,
    FRAMES_INPUT,
    LOGITS_OUTPUT,
    ExportOptions,
    artifact_directory,
    base_manifest,
    feature_name,
    measured_parity,
    seal,
    write_common_files,
)
from grw_edge.exporters.selftest import write_selftest
from grw_edge.manifest import Manifest, StateEntry
from grw_edge.models.classifier import GrwVideoClassifier, MoViNetBackbone
from grw_edge.models.fusion import fold_for_inference
from grw_edge.streaming import (
    ClassifierHead,
    ClipEmbedder,
    StateSpec,
    StreamingStep,
    initial_states,
    state_specs,
)

TARGET = "coreml"
DEPLOYMENT_TARGETS = ("iOS16", "iOS17", "iOS18", "macOS13", "macOS14", "macOS15")
STATEFUL_MINIMUM = {"iOS": 18, "macOS": 15}
NEXT_SUFFIX = "_next"


class StatefulStep(nn.Module):
    """``forward(frames) -> embeddings``; the states are buffers updated in place, which
    Core ML turns into state tensors."""

    def __init__(self, backbone: MoViNetBackbone, specs: Sequence[StateSpec]) -> None:
        super().__init__()
        self.backbone = backbone
        self.state_names = [spec.name for spec in specs]
        for spec, value in zip(specs, initial_states(specs)):
            self.register_buffer(feature_name(spec.name), value)

    def forward(self, frames: Tensor) -> Tensor:
        states = {name: getattr(self, feature_name(name)) for name in self.state_names}
        embeddings, next_states = self.backbone.step(frames, states)
        for name in self.state_names:  # slice assignment: how Core ML states are written
            getattr(self, feature_name(name))[:] = next_states[name]
        return embeddings


def export(model: GrwVideoClassifier, out: str | Path, options: ExportOptions, *,
           minimum_deployment_target: str = "iOS16", stateful: bool = False) -> Path:
    """Write a Core ML artifact for ``model`` to ``out`` and return its path."""
    options.validate()
    _check_options(options, minimum_deployment_target, stateful)
    ct = _coremltools()
    model = model.eval()
    stages = Stages(["step", "head", "parity", "self-test"], desc="export")
    try:
        with artifact_directory(out, overwrite=options.overwrite) as staging:
            stages.start("Core ML step")
            manifest = write_packages(ct, model, staging, options,
                                      deployment=minimum_deployment_target, stateful=stateful,
                                      stages=stages)
            write_common_files(model, staging, options)
            manifest.write(staging)
            stages.start("parity")
            manifest.parity = check_parity(model, staging, manifest, options)
            stages.done()
            stages.start("self-test")
            write_selftest(model, staging, manifest, seed=options.seed,
                           allow_degraded=options.allow_degraded,
                           session=coreml_session(staging, manifest))
            seal(staging, manifest)
            stages.done()
    finally:
        stages.close()
    return Path(out)


def _coremltools():
    # coremltools logs, at import, that Linux lacks its prediction library and that this torch
    # is newer than it was tested with; neither matters for conversion, so keep them quiet
    logger = logging.getLogger("coremltools")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        import coremltools as ct
    except ImportError:
        raise BackendUnavailableError("--target coreml needs coremltools: "
                                      "pip install 'grw-edge[coreml]'") from None
    finally:
        logger.setLevel(level)
    _register_scalar_casts()
    return ct


def _register_scalar_casts() -> None:
    """Let coremltools fold ``int(size)`` casts of traced shapes under NumPy 2.

    Its converter calls ``int()`` on the shape value, a one-element array, which NumPy 2
    refuses; these versions take the element first and otherwise convert as before.
    """
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch import ops
    from coremltools.converters.mil.frontend.torch.torch_op_registry import register_torch_op

    def scalar_cast(python_type: type, dtype_name: str):
        def convert(context, node) -> None:
            value = ops._get_inputs(context, node, expected=1)[0]
            if value.can_be_folded_to_const() and np.size(value.val) == 1:
                folded = python_type(np.asarray(value.val).reshape(()).item())
                context.add(mb.const(val=folded, name=node.name), node.name)
            else:
                ops._cast(context, node, python_type, dtype_name)

        convert.__name__ = f"_{python_type.__name__}"  # the registry keys on this name
        return convert

    for python_type, dtype_name in ((int, "int32"), (bool, "bool")):
        register_torch_op(scalar_cast(python_type, dtype_name),
                          torch_alias=[python_type.__name__], override=True)


def _check_options(options: ExportOptions, deployment: str, stateful: bool) -> None:
    if deployment not in DEPLOYMENT_TARGETS:
        raise ExportError(f"unknown deployment target {deployment!r}; choose one of: "
                          f"{', '.join(DEPLOYMENT_TARGETS)}")
    if options.precision == "int8":
        raise ExportError("Core ML export computes in fp32 or fp16; int8 is available for "
                          "the onnx and tensorrt targets")
    if options.fused:
        raise ExportError("--fused is an ONNX option; Core ML artifacts hold step and head")
    if stateful:
        if options.precision != "fp16":
            raise ExportError("Core ML state tensors are float16: --stateful needs "
                              "--precision fp16")
        system, version = re.match(r"([a-zA-Z]+)(\d+)", deployment).groups()
        if int(version) < STATEFUL_MINIMUM[system]:
            raise ExportError(f"--stateful needs Core ML state tensors: "
                              f"--minimum-deployment-target iOS18 or macOS15 (got {deployment})")


def write_packages(ct, model: GrwVideoClassifier, directory: Path, options: ExportOptions, *,
                   deployment: str, stateful: bool, stages: Stages) -> Manifest:
    """Convert the step (or whole-clip model) and the head; return the manifest."""
    folded = fold_for_inference(model)
    spec = model.backbone_spec
    side = options.resolution or spec.resolution
    batch, t = options.batch, options.frames_per_step
    precision = ct.precision.FLOAT16 if options.precision == "fp16" else ct.precision.FLOAT32
    target = getattr(ct.target, deployment)
    convert = dict(convert_to="mlprogram", compute_precision=precision,
                   minimum_deployment_target=target)
    frames_shape = (batch, 3, t, side, side)
    states: list[StateEntry] = []
    if not spec.causal:
        if stateful:
            raise ExportError(f"{spec.name} is a whole-clip backbone: it has no states")
        clip = ct.RangeDim(2, spec.frames_per_clip, default=spec.frames_per_clip)
        step = _convert(ct, ClipEmbedder(folded.video_backbone),
                        (torch.zeros(batch, 3, 4, side, side),),
                        [ct.TensorType(FRAMES_INPUT, shape=(batch, 3, clip, side, side),
                                       dtype=np.float32)],
                        [EMBEDDINGS_OUTPUT], convert)
    else:
        specs = state_specs(folded.video_backbone, batch=batch, resolution=side,
                            frames_per_step=t)
        frames = torch.zeros(frames_shape)
        frames_type = ct.TensorType(FRAMES_INPUT, shape=frames_shape, dtype=np.float32)
        if stateful:  # Core ML state tensors are float16
            step = _convert(ct, StatefulStep(folded.video_backbone, specs), (frames,),
                            [frames_type], [EMBEDDINGS_OUTPUT], convert,
                            states=[ct.StateType(ct.TensorType(shape=s.shape, dtype=np.float16),
                                                 name=feature_name(s.name)) for s in specs])
            states = [StateEntry(s.name, feature_name(s.name), feature_name(s.name),
                                 list(s.shape), "float16", s.init) for s in specs]
        else:
            states = [StateEntry(s.name, feature_name(s.name),
                                 feature_name(s.name) + NEXT_SUFFIX, list(s.shape), s.dtype,
                                 s.init) for s in specs]
            step = _convert(ct, StreamingStep(folded.video_backbone, specs),
                            (frames, *initial_states(specs)),
                            [frames_type, *(ct.TensorType(s.input, shape=s.shape,
                                                          dtype=np.float32) for s in states)],
                            [EMBEDDINGS_OUTPUT, *(s.output for s in states)], convert)
    stages.done()
    stages.start("Core ML head")
    window = ct.RangeDim(1, spec.frames_per_clip, default=spec.frames_per_clip)
    embed_dim = model.head_config.embed_dim
    head = _convert(ct, ClassifierHead(folded), (torch.zeros(batch, 2, embed_dim),),
                    [ct.TensorType(EMBEDDINGS_OUTPUT, shape=(batch, window, embed_dim),
                                   dtype=np.float32)], [LOGITS_OUTPUT], convert)
    stages.done()
    manifest = base_manifest(
        model, target=TARGET, options=options, states=states,
        step={"file": "step.mlpackage", "outputs": {"embeddings": EMBEDDINGS_OUTPUT},
              "stateful": stateful, "minimum_deployment_target": deployment,
              "compute_precision": options.precision},
        head={"file": "head.mlpackage", "input": EMBEDDINGS_OUTPUT, "output": LOGITS_OUTPUT,
              "shape": [batch, DYNAMIC, embed_dim]})
    for package, role in ((step, "step"), (head, "head")):
        describe(package, manifest, role)
        package.save(str(directory / f"{role}.mlpackage"))
    return manifest


def _convert(ct, module: nn.Module, args: tuple[Tensor, ...], inputs: list, outputs: list[str],
             convert: dict, states: list | None = None):
    """Trace ``module`` and convert it, naming inputs, outputs and states as given."""
    try:
        with torch.no_grad(), warnings.catch_warnings(), \
                contextlib.redirect_stderr(io.StringIO()):  # coremltools' pass-by-pass bars
            warnings.simplefilter("ignore")
            traced = _trace_without_fused_attention(module.eval(), args)
            return ct.convert(traced, inputs=inputs,
                              outputs=[ct.TensorType(name, dtype=np.float32) for name in outputs],
                              states=states, **convert)
    except Exception as error:
        raise ExportError(f"Core ML conversion failed: {type(error).__name__}: "
                          f"{str(error).splitlines()[0] if str(error) else ''}") from error


def _trace_without_fused_attention(module: nn.Module, args: tuple[Tensor, ...]):
    """Trace with attention as its plain ops: coremltools cannot convert the fused
    ``_native_multi_head_attention`` kernel eval-mode PyTorch would otherwise record."""
    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        return torch.jit.trace(module, args, check_trace=False)
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)


def describe(package, manifest: Manifest, role: str) -> None:
    """Core ML metadata: what the model is, its preprocessing, labels and source."""
    package.short_description = (
        f"GRW-smoothed {manifest.backbone} {role}: "
        + ("one step of frames and the states in, embeddings and next states out"
           if role == "step" and manifest.mode == "streaming" else
           "clip frames in, per-frame embeddings out" if role == "step" else
           "embeddings of the last frames in, class logits out"))
    package.author = "grw-edge"
    package.version = str(manifest.producer.get("grw_edge", ""))
    package.user_defined_metadata.update({
        "grw_edge.backbone": manifest.backbone, "grw_edge.role": role,
        "grw_edge.precision": manifest.precision,
        "grw_edge.preprocess": json.dumps(manifest.input["preprocess"]),
        "grw_edge.frames_per_clip": str(manifest.frames_per_clip),
        "grw_edge.fps": str(manifest.fps),
        "grw_edge.source_checkpoint_sha256": str(manifest.source.get("checkpoint_sha256")),
        "grw_edge.weights": str(manifest.source.get("weights")),
    })
    if role == "head":
        from grw_edge.labels import class_names

        package.user_defined_metadata["grw_edge.labels"] = json.dumps(
            class_names(manifest.num_classes))
    descriptions = {FRAMES_INPUT: "frames (B, 3, t, R, R), RGB in [0, 1]",
                    EMBEDDINGS_OUTPUT: "per-frame embeddings (B, t, E)",
                    LOGITS_OUTPUT: "class logits (B, classes)"}
    for state in manifest.states:
        descriptions[state.input] = f"state {state.name} (start at {state.init:g})"
        descriptions[state.output] = f"next value of state {state.name}"
    for name, text in descriptions.items():
        for collection in (package.input_description, package.output_description):
            if name in collection:
                collection[name] = text


def coreml_session(directory: Path, manifest: Manifest):
    """A factory of Core ML sessions on the written packages, or None off macOS."""
    if platform.system() != "Darwin":
        return None
    from grw_edge_runtime.coreml import CoreMLSession

    return lambda: CoreMLSession(directory, manifest)


def check_parity(model: GrwVideoClassifier, directory: Path, manifest: Manifest,
                 options: ExportOptions) -> dict:
    """On macOS, measure the packages against the reference; elsewhere record why not."""
    session = coreml_session(directory, manifest)
    if session is None:
        return {"measured": False, "reason": "Core ML runs models only on macOS; run "
                "grw-edge verify on a Mac"}
    return measured_parity(model, session(), options)
