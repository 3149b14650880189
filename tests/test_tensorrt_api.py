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
import enum
import json
import shutil
import types

import pytest
import torch

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


def test_the_tensorrt_session_flags_non_finite_states_per_stream():
    """The per-stream finite flags MultiStreamSession reads, on CPU tensors standing in for
    the device buffers (the session itself needs a GPU)."""
    from grw_edge_runtime.tensorrt import TensorRTSession

    session = TensorRTSession.__new__(TensorRTSession)
    session._torch, session._batch = torch, 3
    session._next = {"a": torch.zeros(3, 4), "b": torch.zeros(3, 2, 2)}
    session._next["b"][1, 1, 0] = float("nan")
    assert session._pending_rows_finite().tolist() == [True, False, True]
    assert not session._pending_states_finite()
    session._next = {}
    assert session._pending_states_finite()
