"""ONNX target: step (states as named graph inputs/outputs), head, optional fused classifier.

Graphs are exported with torch's dynamo exporter from the inference-folded model (batch
norms and ReZero scales folded into convolutions), checked with ``onnx.checker``, and
refused if they hold control-flow or sequence operators that mobile runtimes and TensorRT
lack.  ``mobile=True`` adds ONNX Runtime's mobile format (``.ort``) and the operator
config for a reduced ONNX Runtime build.
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import onnx
import torch
from torch import nn

from grw_edge._progress import Stages
from grw_edge.errors import ExportError
from grw_edge.exporters.artifact import (
    DYNAMIC,
    EMBEDDINGS_OUTPUT,
    FRAMES_INPUT,
    LOGITS_OUTPUT,
    ExportOptions,
    artifact_directory,
    base_manifest,
    check_and_seal,
    state_entry,
    write_common_files,
)
from grw_edge.exporters.precision import (
    FP16_NOTE,
    INT8_NOTE,
    calibration_clips,
    convert_to_fp16,
    quantize_to_int8,
    step_feeds,
)
from grw_edge.manifest import Manifest
from grw_edge.models.classifier import GrwVideoClassifier
from grw_edge.models.fusion import fold_for_inference
from grw_edge.streaming import (
    ClassifierHead,
    ClipEmbedder,
    FusedStreamingClassifier,
    StreamingStep,
    initial_states,
    state_specs,
    window_spec,
)
from grw_edge_runtime.onnxruntime import OnnxRuntimeSession

TARGET = "onnx"
DEFAULT_OPSET = 18
# Operators that make a graph unportable to mobile runtimes or TensorRT.
FORBIDDEN_OPS = frozenset({
    "Loop", "Scan", "If", "SequenceConstruct", "SequenceAt", "SequenceInsert", "SequenceErase",
    "SequenceEmpty", "SequenceLength", "SplitToSequence", "ConcatFromSequence",
    "BatchNormalization",  # must have been folded into the convolutions
})
NEXT_SUFFIX = ".next"
# Targets whose INT8 needs symmetric activations (zero points 0); the others get the
# asymmetric uint8 activations ONNX Runtime's CPU kernels run fastest.
SYMMETRIC_INT8_TARGETS = frozenset({"tensorrt"})


def export(model: GrwVideoClassifier, out: str | Path, options: ExportOptions, *,
           opset: int = DEFAULT_OPSET, mobile: bool = False, dynamic_batch: bool = False) -> Path:
    """Write an ONNX artifact for ``model`` to ``out`` and return its path; with
    ``dynamic_batch`` the graphs take any batch from 1 to ``options.batch``."""
    return write_artifact(model, out, options, opset=opset, mobile=mobile,
                          dynamic_batch=dynamic_batch)


def write_artifact(model: GrwVideoClassifier, out: str | Path, options: ExportOptions, *,
                   opset: int, mobile: bool = False, dynamic_batch: bool = False,
                   target: str = TARGET,
                   finish: Callable[[Path, Manifest], None] | None = None) -> Path:
    """The ONNX artifact pipeline: graphs, precision, mobile format, parity; ``finish``
    lets a target built on ONNX (TensorRT) add its files before the directory is final."""
    options.validate()
    if dynamic_batch and options.batch < 2:
        raise ExportError("--dynamic-batch needs --batch of at least 2: the largest batch the "
                          "graphs take (a session's stream slots)")
    model = model.eval()
    reduced = options.precision != "fp32"
    stages = Stages(["graphs", *([options.precision] if reduced else []),
                     *(["mobile"] if mobile else []), "parity",
                     *(["finish"] if finish else []), "self-test"], desc="export")
    try:
        with artifact_directory(out, overwrite=options.overwrite) as staging:
            stages.start("ONNX graphs")
            manifest = write_onnx_graphs(model, staging, options, opset=opset, target=target,
                                         dynamic_batch=dynamic_batch)
            write_common_files(model, staging, options)
            stages.done()
            if reduced:
                stages.start(f"{options.precision} conversion")
                manifest.precision_details = reduce_precision(staging, manifest, options)
                stages.done()
            if mobile:
                stages.start("mobile format")
                manifest.mobile = write_mobile_format(staging, manifest)
                stages.done()
            check_and_seal(model, staging, manifest, options, stages,
                           lambda: OnnxRuntimeSession(staging, manifest), before_selftest=finish)
    finally:
        stages.close()
    return Path(out)


def reduce_precision(directory: Path, manifest: Manifest, options: ExportOptions) -> dict:
    """Rewrite the float32 graphs as FP16 (all of them) or INT8 (the step)."""
    graphs = [manifest.step["file"], manifest.head["file"]]
    if manifest.fused:
        graphs.append(manifest.fused["file"])
    if options.precision == "fp16":
        for name in graphs:
            convert_to_fp16(directory / name, keep_io_types=not options.fp16_io)
        if options.fp16_io:
            half_precision_io(manifest)
        return {"compute": "float16",
                "io": "float16" if options.fp16_io else "float32 (casts inside the graphs)",
                "graphs": graphs,
                "note": FP16_NOTE}
    if manifest.fused:
        raise ExportError("INT8 export does not cover the fused graph; drop --fused")
    skipped: list[str] = []
    clips, source = calibration_clips(manifest, options, skipped)
    step = directory / manifest.step["file"]
    if manifest.mode == "streaming":
        feeds = step_feeds(onnx_runner(step), manifest, clips)
    else:
        feeds = ({manifest.input["name"]: clip} for clip in clips)
    for_cpu = manifest.target not in SYMMETRIC_INT8_TARGETS
    details = quantize_to_int8(step, feeds, symmetric_activations=not for_cpu)
    return {**details, "graphs": [manifest.step["file"]],
            "float32": [manifest.head["file"]], "calibration": source,
            "calibration_unreadable": skipped, **({"note": INT8_NOTE} if for_cpu else {})}


def onnx_runner(path: Path):
    """``feed -> outputs by name`` for the graph at ``path`` on onnxruntime's CPU provider."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return lambda feed: dict(zip(names, session.run(None, feed)))


def half_precision_io(manifest: Manifest) -> None:
    """Record that frames, states, embeddings and logits cross the graph boundary as float16."""
    manifest.input["dtype"] = "float16"
    for state in manifest.states:
        state.dtype = "float16"
    manifest.step["dtype"] = manifest.head["dtype"] = "float16"
    if manifest.fused:
        manifest.fused["window_state"]["dtype"] = "float16"


def write_onnx_graphs(model: GrwVideoClassifier, directory: Path, options: ExportOptions, *,
                      opset: int, target: str = TARGET, dynamic_batch: bool = False) -> Manifest:
    """Export the step (or whole-clip model), the head and, if asked, the fused model;
    ``dynamic_batch``: every graph's batch axis takes 1 to ``options.batch`` rows."""
    folded = fold_for_inference(model)
    spec = model.backbone_spec
    side = options.resolution or spec.resolution
    embed_dim = model.head_config.embed_dim
    head_input = torch.zeros(options.batch, 2, embed_dim)
    window = torch.export.Dim("window", min=1, max=4096)
    # traced at the largest batch: an example batch of 1 would fix the axis to 1
    batch = {0: torch.export.Dim("batch", min=1, max=options.batch)} if dynamic_batch else {}

    states = []
    if spec.causal:
        specs = state_specs(folded.video_backbone, batch=options.batch, resolution=side,
                            frames_per_step=options.frames_per_step)
        states = [state_entry(s, s.name, s.name + NEXT_SUFFIX) for s in specs]
        step = StreamingStep(folded.video_backbone, specs)
        frames = torch.zeros(options.batch, 3, options.frames_per_step, side, side)
        export_graph(step, (frames, *initial_states(specs)), directory / "step.onnx",
                     input_names=[FRAMES_INPUT, *(s.input for s in states)],
                     output_names=[EMBEDDINGS_OUTPUT, *(s.output for s in states)], opset=opset,
                     dynamic_shapes=(batch, tuple(batch for _ in specs)) if batch else None)
    else:
        if options.fused:
            raise ExportError(f"{spec.name} is a whole-clip backbone: it has no fused "
                              f"streaming form")
        clip = torch.export.Dim("clip_frames", min=2, max=4096)
        export_graph(ClipEmbedder(folded.video_backbone),
                     (torch.zeros(options.batch, 3, 4, side, side),), directory / "step.onnx",
                     input_names=[FRAMES_INPUT], output_names=[EMBEDDINGS_OUTPUT], opset=opset,
                     dynamic_shapes=({**batch, 2: clip},))
    head = ClassifierHead(folded)
    export_graph(head, (head_input,), directory / "head.onnx", input_names=[EMBEDDINGS_OUTPUT],
                 output_names=[LOGITS_OUTPUT], opset=opset,
                 dynamic_shapes=({**batch, 1: window},))

    manifest = base_manifest(
        model, target=target, options=options, states=states,
        step={"file": "step.onnx", "outputs": {"embeddings": EMBEDDINGS_OUTPUT},
              "opset": opset},
        head={"file": "head.onnx", "input": EMBEDDINGS_OUTPUT, "output": LOGITS_OUTPUT,
              "shape": [options.batch, DYNAMIC, embed_dim]})
    if dynamic_batch:
        manifest.input["batch_range"] = [1, options.batch]
    if options.fused:
        manifest.fused = write_fused(folded, directory, specs, options, opset=opset, batch=batch)
    return manifest


def write_fused(folded: GrwVideoClassifier, directory: Path, specs, options: ExportOptions, *,
                opset: int, batch: dict) -> dict:
    """The per-frame classifier: step + head with the embedding window as one more state."""
    spec = folded.backbone_spec
    side = options.resolution or spec.resolution
    window = window_spec(options.batch, spec.frames_per_clip, folded.head_config.embed_dim)
    fused = FusedStreamingClassifier(StreamingStep(folded.video_backbone, specs),
                                     ClassifierHead(folded))
    frames = torch.zeros(options.batch, 3, options.frames_per_step, side, side)
    all_specs = [*specs, window]
    export_graph(fused, (frames, *initial_states(all_specs)), directory / "fused.onnx",
                 input_names=[FRAMES_INPUT, *(s.name for s in all_specs)],
                 output_names=[LOGITS_OUTPUT, EMBEDDINGS_OUTPUT,
                               *(s.name + NEXT_SUFFIX for s in all_specs)], opset=opset,
                 dynamic_shapes=(batch, tuple(batch for _ in all_specs)) if batch else None)
    return {"file": "fused.onnx", "outputs": {"logits": LOGITS_OUTPUT,
                                              "embeddings": EMBEDDINGS_OUTPUT},
            "window_state": state_entry(window, window.name, window.name + NEXT_SUFFIX).__dict__,
            "note": "states are those of 'states' plus 'window_state'; logits equal the head "
                    "over the last frames_per_clip embeddings once that many frames were seen"}


def export_graph(module: nn.Module, args: Sequence[torch.Tensor], path: Path, *,
                 input_names: list[str], output_names: list[str], opset: int,
                 dynamic_shapes: Sequence[dict] | None = None) -> onnx.ModelProto:
    """Export one module with the dynamo exporter, then check the graph is portable."""
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), tuple(args), str(path), input_names=input_names,
                              output_names=output_names, dynamic_shapes=dynamic_shapes,
                              opset_version=opset, dynamo=True, external_data=False,
                              optimize=True, verbose=False)
    except Exception as error:
        raise ExportError(f"exporting {path.name} to ONNX failed: "
                          f"{type(error).__name__}: {str(error).splitlines()[0]}") from error
    return check_graph(path)


def check_graph(path: Path) -> onnx.ModelProto:
    """``onnx.checker`` plus the portability rule: no control flow, no sequences, no BN."""
    model = onnx.load(str(path))
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"{path.name} fails onnx.checker: {str(error).splitlines()[0]}") from None
    used = {node.op_type for node in model.graph.node}
    forbidden = sorted(used & FORBIDDEN_OPS)
    if forbidden:
        raise ExportError(f"{path.name} uses operators mobile runtimes and TensorRT lack: "
                          f"{', '.join(forbidden)}")
    return model


def write_mobile_format(directory: Path, manifest: Manifest) -> dict:
    """Convert the graphs to ONNX Runtime's mobile format and write the reduced-build config."""
    import onnxruntime as ort
    from onnxruntime.tools.ort_format_model.utils import create_config_from_models

    files = {"step": manifest.step["file"], "head": manifest.head["file"]}
    if manifest.fused:
        files["fused"] = manifest.fused["file"]
    converted = {}
    for role, name in files.items():
        ort_name = Path(name).with_suffix(".ort").name
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(directory / ort_name)
        options.add_session_config_entry("session.save_model_format", "ORT")
        ort.InferenceSession(str(directory / name), options, providers=["CPUExecutionProvider"])
        converted[role] = ort_name
    config = directory / "required_operators.config"
    logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)
    create_config_from_models([directory / n for n in converted.values()], config,
                              enable_type_reduction=True)
    return {**converted, "required_operators": config.name,
            "optimization": "basic (portable across devices)"}

