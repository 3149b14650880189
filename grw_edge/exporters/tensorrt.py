"""TensorRT target: TensorRT-ready ONNX graphs, and serialized engines where a GPU is.

The graphs are the ONNX target's (same precision handling and parity check, run with
ONNX Runtime), statically checked against what TensorRT's ONNX parser accepts.  Engines
are device-specific, so they are built on the machine that will run them: here when
``tensorrt`` and an NVIDIA GPU are present, otherwise later with
``grw-edge build-engine ARTIFACT`` (or the ``trtexec`` line the manifest records).
Precision lives in the graphs (FP16 graphs are converted, INT8 ones carry QDQ scales from
their entropy calibration), so engines are built strongly typed, with no precision flags:
TensorRT 10 is asked for it with the STRONGLY_TYPED network flag, TensorRT 11 has nothing
else.  Which API is installed is told by its attributes, never by its version string.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import onnx
from onnx import numpy_helper

from grw_edge._io import atomic_write_path
from grw_edge.errors import BackendUnavailableError, ExportError
from grw_edge.exporters.artifact import ExportOptions
from grw_edge.exporters.onnx import DEFAULT_OPSET, write_artifact
from grw_edge.manifest import MANIFEST_NAME, Manifest, read_manifest
from grw_edge.models.classifier import GrwVideoClassifier
from grw_edge_runtime.integrity import record_files

TARGET = "tensorrt"
DEFAULT_WORKSPACE_GIB = 2.0
TIMING_CACHE = "timing.cache"
MAX_OPSET = 20  # TensorRT 10 parses opsets 9 to 20
# Operators TensorRT 10's ONNX parser implements (onnx-tensorrt docs/operators.md), less
# the control-flow ones the ONNX target already refuses.
SUPPORTED_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization
Cast Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum
DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten
Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool
Greater GreaterOrEqual GroupNormalization HardSigmoid HardSwish Identity
InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log
LogSoftmax LpNormalization LpPool LRN MatMul Max MaxPool Mean Min Mod Mul Neg Not Or Pad
Pow PRelu QuantizeLinear Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp
ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize
Round ScatterElements ScatterND Selu Shape Sigmoid Sign Sin Sinh Size Slice Softmax Softplus
Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK
Transpose Trilu Unsqueeze Where Xor
""".split())
SUPPORTED_TYPES = frozenset({
    onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
    onnx.TensorProto.INT32, onnx.TensorProto.INT64, onnx.TensorProto.INT8,
    onnx.TensorProto.UINT8, onnx.TensorProto.BOOL,
})
# Inputs that TensorRT needs as build-time constants: (op, input index).
CONSTANT_INPUTS = {("Conv", 1), ("ConvTranspose", 1), ("Slice", 3), ("Squeeze", 1),
                   ("Unsqueeze", 1)}


def export(model: GrwVideoClassifier, out: str | Path, options: ExportOptions, *,
           opset: int = DEFAULT_OPSET, workspace_gib: float = DEFAULT_WORKSPACE_GIB,
           dynamic_batch: bool = False) -> Path:
    """Write a TensorRT artifact: ready ONNX graphs, plus engines if this machine can build;
    ``dynamic_batch``: engines with an optimisation profile over batches 1 to ``batch``."""
    if opset > MAX_OPSET:
        raise ExportError(f"TensorRT parses ONNX opsets up to {MAX_OPSET}; use --opset "
                          f"{MAX_OPSET} or lower")
    finish = functools.partial(finish_tensorrt, workspace_gib=workspace_gib,
                               name=Path(out).name)
    return write_artifact(model, out, options, opset=opset, target=TARGET, finish=finish,
                          dynamic_batch=dynamic_batch)


def finish_tensorrt(directory: Path, manifest: Manifest, *, workspace_gib: float,
                    name: str) -> None:
    """Check the graphs, then build the engines or record how to build them."""
    for graph in graph_files(manifest):
        problems = tensorrt_problems(onnx.load(str(directory / graph)))
        if problems:
            raise ExportError(f"{graph} is not TensorRT-ready: {'; '.join(problems[:3])}")
    reason = engine_unavailable_reason()
    if reason is None:
        manifest.engine = build_engines(directory, manifest, workspace_gib=workspace_gib)
        return
    flag = installed_strongly_typed_flag()
    if flag is None:  # no TensorRT here: the lines for both supported versions
        trtexec = trtexec_commands(manifest, workspace_gib, strongly_typed_flag=False)
        lines = {"trtexec": trtexec,
                 "trtexec_tensorrt10": trtexec_commands(manifest, workspace_gib,
                                                        strongly_typed_flag=True)}
    else:
        trtexec = trtexec_commands(manifest, workspace_gib, strongly_typed_flag=flag)
        lines = {"trtexec": trtexec}
    manifest.engine = {
        "built": False, "reason": reason,
        "build_command": f"grw-edge build-engine {name}",
        **lines,
        "message": (f"TensorRT engine not built ({reason}); the ONNX graphs are TensorRT-ready. "
                    f"Build the engine on the target device: grw-edge build-engine {name}  "
                    f"(or: {trtexec[0]})"),
    }


def graph_files(manifest: Manifest) -> list[str]:
    """The ONNX graphs an engine is built from: step (or whole clip) and head."""
    return [manifest.step["file"], manifest.head["file"]]


def tensorrt_problems(model: onnx.ModelProto) -> list[str]:
    """Why TensorRT's ONNX parser would reject ``model`` (empty: it is TensorRT-ready).

    Checks the opset, every operator, every tensor type, that quantization zero points are
    zero (TensorRT quantizes symmetrically) and that weights and axes are constants.
    """
    problems = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset > MAX_OPSET:
        problems.append(f"opset {opset} is above TensorRT's {MAX_OPSET}")
    graph = model.graph
    foreign = sorted({f"{n.domain}::{n.op_type}" if n.domain else n.op_type
                      for n in graph.node if n.domain not in ("", "ai.onnx")
                      or n.op_type not in SUPPORTED_OPS})
    if foreign:
        problems.append(f"operators TensorRT lacks: {', '.join(foreign)}")
    typed = [*graph.input, *graph.output, *graph.value_info]
    bad_types = sorted({onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type)
                        for v in typed if v.type.tensor_type.elem_type not in SUPPORTED_TYPES}
                       | {onnx.TensorProto.DataType.Name(t.data_type) for t in graph.initializer
                          if t.data_type not in SUPPORTED_TYPES})
    if bad_types:
        problems.append(f"tensor types TensorRT lacks: {', '.join(bad_types)}")
    values = _constant_tensors(graph)
    constants = _constant_names(graph, values)
    for node in graph.node:
        for op, index in CONSTANT_INPUTS:
            if node.op_type == op and len(node.input) > index and node.input[index] \
                    and node.input[index] not in constants:
                problems.append(f"{node.op_type} {node.name!r} needs input {index} constant")
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            zero = values.get(node.input[2])
            if zero is None or numpy_helper.to_array(zero).any():
                problems.append(f"{node.op_type} {node.name!r} has a non-zero zero point")
    return problems


def _constant_tensors(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """Initializers and the values of Constant nodes, by name."""
    values = {tensor.name: tensor for tensor in graph.initializer}
    values.update({node.output[0]: node.attribute[0].t for node in graph.node
                   if node.op_type == "Constant" and node.attribute[0].name == "value"})
    return values


def _constant_names(graph: onnx.GraphProto, values: dict[str, onnx.TensorProto]) -> set[str]:
    """Constant tensors, and what Identity/DequantizeLinear/Cast make from them."""
    constants = set(values) | {n.output[0] for n in graph.node if n.op_type == "Constant"}
    for node in graph.node:  # nodes are topologically sorted
        if node.op_type in ("Identity", "DequantizeLinear", "Cast") and all(
                name in constants for name in node.input if name):
            constants.add(node.output[0])
    return constants


def engine_unavailable_reason() -> str | None:
    """Why no engine can be built here, or None when TensorRT and a CUDA GPU are present."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "TensorRT is not installed (pip install 'grw-edge[tensorrt]' on the target)"
    import torch

    if not torch.cuda.is_available():
        return "no NVIDIA GPU is visible on this machine"
    return None


def needs_strongly_typed_flag(trt) -> bool:
    """Whether this TensorRT still offers weak typing (TensorRT 10: ``BuilderFlag.FP16``
    exists), so that strong typing must be asked for with the network flag."""
    return hasattr(trt.BuilderFlag, "FP16")


def installed_strongly_typed_flag() -> bool | None:
    """``needs_strongly_typed_flag`` of the installed TensorRT, or None when there is none."""
    try:
        import tensorrt as trt
    except ImportError:
        return None
    return needs_strongly_typed_flag(trt)


def network_flags(trt) -> int:
    """``create_network`` flags of a strongly typed network on this TensorRT."""
    if not needs_strongly_typed_flag(trt):
        return 0  # TensorRT 11: strongly typed is the only kind of network
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if flag is None:
        raise BackendUnavailableError(f"TensorRT {trt.__version__} cannot build strongly typed "
                                      f"networks; install TensorRT 10 or 11 "
                                      f"(pip install 'grw-edge[tensorrt]')")
    return 1 << int(flag)


def _dynamic_profile(manifest: Manifest) -> dict[str, dict[str, list[list[int]]]]:
    """min/opt/max shapes of every input with a dynamic axis, by graph role: the head's
    window and the clip's frames (up to the backbone's clip length) and, in artifacts
    exported with --dynamic-batch, the batch of every input (opt: the largest batch, so
    that a full multi-stream tick runs at the engine's best)."""
    low_batch, high_batch = manifest.batch_range
    window = manifest.frames_per_clip
    r = manifest.resolution

    def over_batch(shape: list[int]) -> list[list[int]]:
        return [[low_batch, *shape], [high_batch, *shape], [high_batch, *shape]]

    embeddings = manifest.head["input"]
    profiles = {"head": {embeddings: [[low_batch, 1, manifest.embed_dim],
                                      [high_batch, window, manifest.embed_dim],
                                      [high_batch, window, manifest.embed_dim]]}}
    frames = manifest.input["name"]
    if manifest.mode == "clip":
        profiles["step"] = {frames: [[low_batch, 3, 2, r, r], [high_batch, 3, window, r, r],
                                     [high_batch, 3, window, r, r]]}
    elif low_batch < high_batch:
        profiles["step"] = {frames: over_batch([3, manifest.frames_per_step, r, r]),
                            **{s.input: over_batch(s.shape[1:]) for s in manifest.states}}
    return profiles


def trtexec_commands(manifest: Manifest, workspace_gib: float, *,
                     strongly_typed_flag: bool) -> list[str]:
    """The trtexec lines equivalent to ``grw-edge build-engine`` (run in the artifact):
    ``--stronglyTyped`` for TensorRT 10 (``strongly_typed_flag``), nothing for 11."""
    flags = " --stronglyTyped" if strongly_typed_flag else ""
    lines = []
    profiles = _dynamic_profile(manifest)
    for role, graph in zip(("step", "head"), graph_files(manifest)):
        shapes = profiles.get(role, {})
        ranges = "".join(
            f" --{kind}Shapes=" + ",".join(f"{name}:{'x'.join(map(str, dims[i]))}"
                                           for name, dims in shapes.items())
            for i, kind in enumerate(("min", "opt", "max"))) if shapes else ""
        lines.append(f"trtexec --onnx={graph} --saveEngine={Path(graph).stem}.engine"
                     f"{flags} --memPoolSize=workspace:{int(workspace_gib * 1024)}M"
                     f" --timingCacheFile={TIMING_CACHE}{ranges}")
    return lines


def build_engines(directory: Path, manifest: Manifest, *,
                  workspace_gib: float = DEFAULT_WORKSPACE_GIB) -> dict:
    """Build and serialize the step and head engines into ``directory`` on this GPU."""
    import tensorrt as trt
    import torch

    logger = trt.Logger(trt.Logger.WARNING)
    cache_path = directory / TIMING_CACHE
    profiles = _dynamic_profile(manifest)
    engines = {}
    for role, graph in zip(("step", "head"), graph_files(manifest)):
        builder = trt.Builder(logger)
        network = builder.create_network(network_flags(trt))
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(directory / graph)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise ExportError(f"TensorRT cannot parse {graph}: {errors[0] if errors else '?'}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 2**30))
        cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.exists()
                                           else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
        if role in profiles:
            profile = builder.create_optimization_profile()
            for name, (low, opt, high) in profiles[role].items():
                profile.set_shape(name, low, opt, high)
            config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise ExportError(f"TensorRT could not build an engine from {graph}")
        engine_name = f"{Path(graph).stem}.engine"
        _write_atomic(directory / engine_name, bytes(serialized))
        _write_atomic(cache_path, bytes(config.get_timing_cache().serialize()))
        engines[role] = engine_name
    return {"built": True, **engines, "timing_cache": TIMING_CACHE,
            "tensorrt": trt.__version__, "device": torch.cuda.get_device_name(),
            "compute_capability": ".".join(map(str, torch.cuda.get_device_capability())),
            "profiles": profiles, "workspace_gib": workspace_gib}


def build_engine_in_artifact(artifact: str | Path, *,
                             workspace_gib: float = DEFAULT_WORKSPACE_GIB) -> Manifest:
    """``grw-edge build-engine``: build the engines of a TensorRT artifact on this device."""
    directory = Path(artifact)
    manifest = read_manifest(directory)
    if manifest.target != TARGET:
        raise ExportError(f"{directory} is a {manifest.target!r} artifact; export it with "
                          f"--target tensorrt first")
    reason = engine_unavailable_reason()
    if reason is not None:
        raise BackendUnavailableError(f"cannot build a TensorRT engine here: {reason}")
    manifest.engine = build_engines(directory, manifest, workspace_gib=workspace_gib)
    manifest.files = record_files(directory)  # the engines and the timing cache are new files
    _write_atomic(directory / MANIFEST_NAME,
                  (json.dumps(manifest.to_dict(), indent=2) + "\n").encode())
    return manifest


def _write_atomic(path: Path, data: bytes) -> None:
    with atomic_write_path(path) as temporary:
        temporary.write_bytes(data)
