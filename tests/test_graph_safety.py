"""CUDA-graph safety without a GPU (issue 24): a step captured as a CUDA graph must never
build a tensor from host data, move one between devices or sync with the host.  These tests
record the operators a second step dispatches on the ``meta`` device (no data, so every
backbone at every batch size costs milliseconds) and refuse any that reads a tensor none of
the step's operators made, leaves the device or syncs; the real capture runs in the ``gpu``
tests of test_device_placement.py."""
import pytest
import torch
from torch import nn

from grw_edge.models import HeadConfig, create_model
from grw_edge.runtimes.graph_safety import (
    graph_unsafe_ops,
    module_tensors,
    stray_tensor_attributes,
)
from grw_edge.streaming import initial_states, state_specs

META = torch.device("meta")
SMALL = HeadConfig(16, 1, 2, 32, 2)
CAUSAL = ("movineta0s", "movineta1s", "movineta2s")
PRECISIONS = (torch.float32, torch.float16, torch.bfloat16)  # what TorchSession offers


def meta_backbone(name: str, dtype: torch.dtype) -> nn.Module:
    """``name``'s backbone moved to the meta device in ``dtype`` with ``.to()``, as a session
    moves it to the GPU (so a constant ``.to()`` misses stays behind and shows)."""
    return create_model(name, head=SMALL).eval().video_backbone.to(META, dtype)


def meta_states(name: str, batch: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """``name``'s initial states at 32 px on the meta device (specs found on the CPU)."""
    backbone = create_model(name, head=SMALL).eval().video_backbone
    specs = state_specs(backbone, batch=batch, resolution=32)
    return {s.name: t.to(dtype) for s, t in zip(specs, initial_states(specs, device=META))}


@pytest.mark.parametrize("dtype", PRECISIONS, ids=str)
@pytest.mark.parametrize("batch", (1, 2))
@pytest.mark.parametrize("name", CAUSAL)
def test_a_streaming_step_reads_only_device_tensors(name, batch, dtype):
    backbone, states = meta_backbone(name, dtype), meta_states(name, batch, dtype)
    frames = torch.zeros(batch, 3, 1, 32, 32, device=META, dtype=dtype)
    findings = graph_unsafe_ops(lambda: backbone.step(frames, states),
                                [frames, *states.values(), *module_tensors(backbone)], META)
    assert findings == []


@pytest.mark.parametrize("batch", (1, 2))
def test_the_whole_clip_step_of_a3b_reads_only_device_tensors(batch):
    backbone = meta_backbone("movineta3b", torch.float32)
    frames = torch.zeros(batch, 3, 2, 32, 32, device=META)
    findings = graph_unsafe_ops(lambda: backbone.step(frames), [frames, *module_tensors(backbone)],
                                META)
    assert findings == []


@pytest.mark.parametrize("name", (*CAUSAL, "movineta3b"))
def test_to_moves_every_constant_of_the_model(name):
    model = create_model(name, head=SMALL).to(META, torch.float16)
    assert stray_tensor_attributes(model) == []
    for tensor in module_tensors(model):
        assert tensor.device == META
        assert not tensor.is_floating_point() or tensor.dtype == torch.float16


class HostConstant(nn.Module):
    """A deliberately unsafe step: builds a tensor from a Python list on every call."""

    def forward(self, x):
        return x + x.new_tensor([1.0, 2.0])


class HostScalar(nn.Module):
    """A deliberately unsafe step: reads a value back to the host."""

    def forward(self, x):
        return x * float(x.sum())


class CrossDevice(nn.Module):
    """A deliberately unsafe step: a constant made on the host, then moved."""

    def forward(self, x):
        return x + torch.ones(2).to(x.device)


class StrayAttribute(nn.Module):
    """A deliberately unsafe module: a constant ``.to()`` does not move."""

    def __init__(self):
        super().__init__()
        self.table = torch.ones(2)

    def forward(self, x):
        return x + self.table


@pytest.mark.parametrize("module", (HostConstant(), HostScalar(), CrossDevice()),
                         ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("device", ("cpu", "meta"))
def test_the_check_refuses_steps_that_use_host_data(module, device):
    """Not vacuous: each broken step is caught, on the CPU as on the meta device (HostScalar
    cannot run on meta: reading a value needs data; CrossDevice is caught only where the
    host is not the step's device, which is why the backbone tests run on meta)."""
    if device == "meta" and isinstance(module, HostScalar):
        pytest.skip("meta tensors hold no value to read")
    if device == "cpu" and isinstance(module, CrossDevice):
        pytest.skip("on the CPU a host-made tensor is on the step's device")
    x = torch.zeros(2, device=device)
    assert graph_unsafe_ops(lambda: module(x), [x], device)


def test_the_check_refuses_constants_that_to_does_not_move():
    module = StrayAttribute().to(META)
    assert stray_tensor_attributes(module) == ["StrayAttribute.table"]
    x = torch.zeros(2, device=META)
    with pytest.raises(Exception):  # on meta the stray CPU constant cannot even be added
        graph_unsafe_ops(lambda: module(x), [x, *module_tensors(module)], META)


def test_the_check_accepts_a_safe_step():
    x = torch.zeros(2, device=META)
    weight = torch.ones(2, device=META)
    assert graph_unsafe_ops(lambda: (x * weight + 1.0).clamp(min=0.0), [x, weight], META) == []


def test_the_sessions_whole_captured_body_is_graph_safe():
    """What the torch session captures: frame cast, step, next states written into the other
    buffer set, per-stream finite flags (bf16, batch 2)."""
    from grw_edge.runtimes.torch import PingPongStep, StateBuffers
    from grw_edge_runtime.manifest import StateEntry

    backbone = create_model("movineta0s", head=SMALL).eval().video_backbone
    entries = [StateEntry(s.name, s.name, s.name, [2, *s.shape[1:]])
               for s in state_specs(backbone, resolution=32)]
    backbone.to(META, torch.bfloat16)
    sets = tuple(StateBuffers(entries, 2, torch.bfloat16, META) for _ in range(2))
    step = PingPongStep(backbone.step, sets, (2, 3, 1, 32, 32), capture=False)
    known = [step.frames, *(t for s in sets for t in (s.flat, *s.views.values())),
             *module_tensors(backbone)]
    assert graph_unsafe_ops(step.replay, known, META) == []
