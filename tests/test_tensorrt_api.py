"""The engine builder against the TensorRT 10.x and 11.x Python APIs.

TensorRT cannot be installed here (no NVIDIA GPU), so these are FAKES of its Python API:
two small ``tensorrt`` modules that expose only the names the builder path can touch in
each version (TensorRT 10.x Python API docs; NVIDIA's "TensorRT 10.x to 11.x Python API"
migration reference: 11.x removed ``BuilderFlag.FP16/BF16/INT8/FP8``, the INT8 calibrators,
``NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` and ``Builder.platform_has_fast_fp16``)
and record every call, so a name that does not exist in a version fails as it would there.
Whether 11.x still lists ``STRONGLY_TYPED`` does not matter: the builder must not read it
there, so the 11.x fake leaves it out.
"""
import ctypes
import enum
import json
import shutil
import sys
import types

import numpy as np
import pytest
import torch

from grw_edge.exporters import export

from grw_edge.exporters.tensorrt import (
    build_engines,
    finish_tensorrt,
    network_flags,
    trtexec_commands,
)
from grw_edge.manifest import read_manifest


def fake_tensorrt(version: str, calls: list) -> types.ModuleType:
    """A recording fake of the TensorRT ``version`` Python API (10.x or 11.x)."""
    ten = version.startswith("10.")
    builder_flags = ["TF32", "REFIT", "DEBUG", "GPU_FALLBACK", "SPARSE_WEIGHTS"]
    if ten:
        builder_flags += ["FP16", "BF16", "INT8", "FP8", "OBEY_PRECISION_CONSTRAINTS",
                          "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO"]
    network_flag_names = (["EXPLICIT_BATCH", "STRONGLY_TYPED"] if ten else []) + [
        "PREFER_AOT_PYTHON_PLUGINS", "PREFER_JIT_PYTHON_PLUGINS"]

    def record(name):
        def method(self, *args, **kwargs):
            calls.append((name, args, kwargs))
            return getattr(self, "_returns", {}).get(name)
        return method

    class Serialized(bytes):
        pass

    class TimingCache:
        serialize = lambda self: Serialized(b"cache")  # noqa: E731

    class Config:
        set_memory_pool_limit = record("config.set_memory_pool_limit")
        set_flag = record("config.set_flag")
        add_optimization_profile = record("config.add_optimization_profile")

        def create_timing_cache(self, data):
            calls.append(("config.create_timing_cache", (data,), {}))
            return TimingCache()

        set_timing_cache = record("config.set_timing_cache")
        get_timing_cache = lambda self: TimingCache()  # noqa: E731
        if ten:
            int8_calibrator = None

    class Profile:
        set_shape = record("profile.set_shape")

    class Builder:
        def __init__(self, logger):
            calls.append(("Builder", (), {}))

        def create_network(self, flags=0):
            calls.append(("builder.create_network", (flags,), {}))
            return object()

        create_builder_config = lambda self: Config()  # noqa: E731
        create_optimization_profile = lambda self: Profile()  # noqa: E731

        def build_serialized_network(self, network, config):
            calls.append(("builder.build_serialized_network", (), {}))
            return Serialized(b"engine")

        if ten:
            platform_has_fast_fp16 = True

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            calls.append(("parser.parse_from_file", (path,), {}))
            return True

    class Logger:
        WARNING = 2

        def __init__(self, severity):
            pass

    module = types.ModuleType("tensorrt")
    module.__version__ = version
    module.Builder, module.OnnxParser, module.Logger = Builder, OnnxParser, Logger
    module.BuilderFlag = enum.IntEnum("BuilderFlag", builder_flags)
    module.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag",
                                                        network_flag_names, start=0)
    module.MemoryPoolType = enum.IntEnum("MemoryPoolType", ["WORKSPACE"], start=0)
    if ten:
        module.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (), {})
    return module


@pytest.fixture
def gpu_facts(monkeypatch):
    """What build_engines records about the GPU, since there is none here."""
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: "fake GPU")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *_: (9, 0))


@pytest.mark.parametrize("version", ["10.13.3", "11.4.1"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_the_builder_calls_only_what_each_version_has(artifacts, tmp_path, monkeypatch,
                                                      gpu_facts, version, precision):
    calls = []
    trt = fake_tensorrt(version, calls)
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", trt)
    directory = shutil.copytree(artifacts["movineta0s"], tmp_path / "a0s")
    manifest = read_manifest(directory)
    manifest.precision = precision
    engine = build_engines(directory, manifest)
    assert engine["built"] and engine["tensorrt"] == version
    assert (directory / engine["step"]).read_bytes() == b"engine"
    created = [args[0] for name, args, _ in calls if name == "builder.create_network"]
    strongly_typed = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) \
        if version.startswith("10.") else 0
    assert created == [strongly_typed, strongly_typed]  # step and head, strongly typed
    assert not [c for c in calls if c[0] == "config.set_flag"]  # no weak-typing flags


def test_strong_typing_is_asked_for_only_where_it_is_optional():
    assert network_flags(fake_tensorrt("11.0.0", [])) == 0
    ten = fake_tensorrt("10.0.1", [])
    assert network_flags(ten) == 1 << int(ten.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_trtexec_lines_suit_each_version(artifacts, precision):
    manifest = read_manifest(artifacts["movineta0s"])
    manifest.precision = precision
    for flag in (True, False):
        for line in trtexec_commands(manifest, 2.0, strongly_typed_flag=flag):
            assert ("--stronglyTyped" in line) is flag
            assert not {"--fp16", "--int8", "--best", "--bf16"} & set(line.split())


@pytest.mark.parametrize("version", [None, "10.13.3", "11.4.1"])
def test_the_manifest_records_lines_for_the_installed_tensorrt(artifacts, tmp_path,
                                                               monkeypatch, version):
    """Without a GPU: the installed version's lines, or both versions' when none is."""
    import grw_edge.exporters.tensorrt as exporter

    if version is None:
        monkeypatch.setitem(__import__("sys").modules, "tensorrt", None)  # import fails
    else:
        monkeypatch.setitem(__import__("sys").modules, "tensorrt", fake_tensorrt(version, []))
    monkeypatch.setattr(exporter, "engine_unavailable_reason", lambda: "no GPU here")
    directory = shutil.copytree(artifacts["movineta0s"], tmp_path / "a0s")
    manifest = read_manifest(directory)
    finish_tensorrt(directory, manifest, workspace_gib=2.0, name="a0s")
    engine = json.loads(json.dumps(manifest.engine))
    flagged = ["--stronglyTyped" in line for line in engine["trtexec"]]
    assert flagged == [version is not None and version.startswith("10.")] * 2
    assert ("trtexec_tensorrt10" in engine) is (version is None)
    if version is None:
        assert all("--stronglyTyped" in line for line in engine["trtexec_tensorrt10"])


class OnnxEngine:
    """A FAKE ``ICudaEngine`` whose serialized form is the ONNX graph it was built from:
    onnxruntime computes what the engine would, and the context reads and writes the
    memory at the addresses the session gives it, with the shapes it sets (CPU tensors
    stand in for device memory), so wrong shapes, addresses or buffer roles show up as
    wrong numbers.  Dynamic axes must be set with ``set_input_shape`` before a run, as in
    TensorRT."""

    def __init__(self, trt, data: bytes):
        import onnxruntime as ort

        self.trt, self.session = trt, ort.InferenceSession(data)
        self.inputs = {i.name: i.shape for i in self.session.get_inputs()}
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.num_io_tensors = len(self.inputs) + len(self.outputs)

    def get_tensor_name(self, index: int) -> str:
        return [*self.inputs, *self.outputs][index]

    def get_tensor_dtype(self, name: str):
        return self.trt.float32

    def create_execution_context(self):
        return OnnxContext(self)


class OnnxContext:
    """The FAKE execution context of an :class:`OnnxEngine` (see there)."""

    def __init__(self, engine: OnnxEngine):
        self.engine, self.addresses, self.runs = engine, {}, []
        self.shapes = {name: shape for name, shape in engine.inputs.items()
                       if all(isinstance(d, int) for d in shape)}

    def set_input_shape(self, name: str, shape) -> bool:
        static = self.engine.inputs[name]
        assert all(isinstance(d, str) or d == n for d, n in zip(static, shape)), (name, shape)
        self.shapes[name] = list(shape)
        return True

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.addresses[name] = address
        return True

    def _input_shapes(self) -> dict:
        missing = sorted(set(self.engine.inputs) - set(self.shapes))
        assert not missing, f"input shapes not set: {missing}"
        return {name: self.shapes[name] for name in self.engine.inputs}

    def get_tensor_shape(self, name: str):
        if name in self.engine.inputs:
            return self.shapes[name]
        zeros = {k: np.zeros(v, np.float32) for k, v in self._input_shapes().items()}
        return self.engine.session.run([name], zeros)[0].shape

    def execute_async_v3(self, stream_handle: int) -> bool:
        feeds = {name: _at(self.addresses[name], shape).copy()
                 for name, shape in self._input_shapes().items()}
        results = self.engine.session.run(self.engine.outputs, feeds)
        for name, value in zip(self.engine.outputs, results):
            np.copyto(_at(self.addresses[name], value.shape), value)
        self.runs.append(self.shapes[next(iter(self.engine.inputs))][0])
        return True


def _at(address: int, shape) -> np.ndarray:
    """The float32 array of ``shape`` at ``address``."""
    return np.ctypeslib.as_array(ctypes.cast(address, ctypes.POINTER(ctypes.c_float)),
                                 shape=tuple(shape))


def fake_tensorrt_runtime(version: str) -> types.ModuleType:
    """The fake API of ``fake_tensorrt`` plus a runtime that deserializes OnnxEngines."""
    trt = fake_tensorrt(version, [])
    trt.float32, trt.float16, trt.int32, trt.int64, trt.int8, trt.bool = range(6)
    trt.Runtime = type("Runtime", (), {
        "__init__": lambda self, logger: None,
        "deserialize_cuda_engine": lambda self, data: OnnxEngine(trt, data)})
    return trt


def pretend_tensorrt_on_cpu(monkeypatch) -> None:
    """The fake TensorRT runtime, and torch told a GPU is there (buffers stay on the CPU);
    after any export, which must not believe in the GPU."""
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt_runtime("10.13.3"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_stream",
                        lambda *_: types.SimpleNamespace(cuda_stream=0))


def with_fake_engines(artifact, directory):
    """A copy of a TensorRT artifact whose 'engines' are its ONNX graphs (OnnxEngine)."""
    directory = shutil.copytree(artifact, directory)
    manifest = read_manifest(directory)
    for role in ("step", "head"):
        shutil.copy(directory / getattr(manifest, role)["file"], directory / f"{role}.engine")
    manifest.engine = {"built": True, "step": "step.engine", "head": "head.engine"}
    manifest.files = None
    manifest.write(directory)
    return directory


@pytest.fixture(scope="module")
def dynamic_tensorrt_artifact(tmp_path_factory):
    """A 3-slot A0S TensorRT artifact with a batch profile (--dynamic-batch), no engines."""
    from tests.conftest import small_random_model

    return export(small_random_model("movineta0s"), "tensorrt",
                  tmp_path_factory.mktemp("trt") / "a0s", batch=3, resolution=32,
                  parity_frames=2, include_reference=False, dynamic_batch=True)


def test_a_batch_profile_covers_every_step_input(dynamic_tensorrt_artifact, tmp_path,
                                                 monkeypatch, gpu_facts):
    manifest = read_manifest(dynamic_tensorrt_artifact)
    assert manifest.batch_range == (1, 3) and not manifest.engine["built"]
    step_inputs = [manifest.input["name"], *(s.input for s in manifest.states)]
    step_line, head_line = manifest.engine["trtexec"]
    for kind, batch in (("min", 1), ("opt", 3), ("max", 3)):
        shapes = dict(item.split(":") for item in
                      step_line.split(f"--{kind}Shapes=")[1].split()[0].split(","))
        assert list(shapes) == step_inputs
        assert {dims.split("x")[0] for dims in shapes.values()} == {str(batch)}
        assert f"--{kind}Shapes=embeddings:{batch}x" in head_line
    calls = []
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt("11.4.1", calls))
    directory = shutil.copytree(dynamic_tensorrt_artifact, tmp_path / "a0s")
    build_engines(directory, read_manifest(directory))
    profiled = [args[0] for name, args, _ in calls if name == "profile.set_shape"]
    assert profiled == [*step_inputs, manifest.head["input"]]


def test_streams_on_the_tensorrt_session_equal_each_stream_alone(
        dynamic_tensorrt_artifact, tmp_path, monkeypatch):
    """MultiStreamSession on the TensorRT session (fake engines, see OnnxEngine): a tick
    runs only the rows up to the highest slot in use, and every stream's embeddings and
    logits equal the same stream alone on onnxruntime."""
    import grw_edge_runtime
    from grw_edge_runtime import MultiStreamSession
    from grw_edge_runtime.tensorrt import TensorRTSession

    directory = with_fake_engines(dynamic_tensorrt_artifact, tmp_path / "a0s")
    pretend_tensorrt_on_cpu(monkeypatch)
    session = TensorRTSession(directory, device="cpu")
    streams = MultiStreamSession(session)
    rng = np.random.default_rng(0)
    frames = rng.random((2, 6, 3, 32, 32), dtype=np.float32)
    a = streams.join()
    got = {0: [], 1: []}
    for tick in range(6):
        if tick == 2:
            b = streams.join()
        live = {0: a} if tick < 2 else {0: a, 1: b}
        out = streams.push({i: frames[k, tick] for k, i in live.items()})
        for k, i in live.items():
            got[k].append(out[i])
    assert session._step[1].runs == [1, 1, 2, 2, 2, 2]
    for k, steps in got.items():
        alone = MultiStreamSession(grw_edge_runtime.open(dynamic_tensorrt_artifact,
                                                         "onnxruntime"))
        only = alone.join()
        for tick, embeddings in zip(range(2 * k, 6), steps):
            expected = alone.push({only: frames[k, tick]})[only]
            assert np.abs(embeddings - expected).max() <= 1e-5
        logits = streams.classify(a if k == 0 else b)
        assert np.abs(logits - alone.classify(only)).max() <= 1e-4
    waiting = streams.states(b)  # a tick without b: b's states are kept, on the device
    only = MultiStreamSession(grw_edge_runtime.open(dynamic_tensorrt_artifact, "onnxruntime"))
    solo = only.join()
    for tick in range(6):
        only.push({solo: frames[0, tick]})
    assert np.abs(streams.push({a: frames[0, 0]})[a] - only.push({solo: frames[0, 0]})[solo]
                  ).max() <= 1e-5
    assert all(np.array_equal(value, waiting[name])
               for name, value in streams.states(b).items())
    session.start_from({name: np.concatenate([v[:1], v[1:2] * np.nan, v[2:]])
                        for name, v in session.states().items()})
    out = streams.push({a: frames[0, 0], b: frames[1, 0]})
    assert out[a].shape == (1, 64) and "stream 1" in str(out[b])


@pytest.mark.parametrize("backbone", ["movineta0s", "movineta3b"])
def test_the_tensorrt_session_passes_the_self_test_on_fake_engines(artifacts, backbone, tmp_path,
                                                                   monkeypatch):
    """Streaming (states in two swapped buffers, read back and set by name) and whole-clip
    (dynamic frames) paths of the session, through the engines' API (OnnxEngine)."""
    from grw_edge_runtime.tensorrt import TensorRTSession

    directory = with_fake_engines(artifacts[backbone], tmp_path / backbone)
    pretend_tensorrt_on_cpu(monkeypatch)
    session = TensorRTSession(directory, device="cpu")
    report = session.self_test(hashes=False)
    assert report.passed, report.line()
    if session.streaming:
        states = session.states()
        session.reset()
        session.start_from(states)
        assert all(np.array_equal(session.states()[name], value)
                   for name, value in states.items())
