"""Finds what would break a step captured as a CUDA graph, without a GPU: records the
operators a call dispatches and reports every one that reads host data or syncs.

A captured graph replays the kernels of one call over fixed device buffers, so the call must
never build a tensor from Python data (``torch.tensor``, ``new_tensor``: a host-to-device
copy at capture, stale or illegal afterwards), move a tensor between devices, or read a
value back to the host (``.item()``, ``nonzero``).  The recorder knows every tensor the call
may legitimately read (its inputs, the module's parameters and buffers) and every tensor
its operators made; any other tensor reaching an operator came from host data.  Run it on
the ``meta`` device and a host-made tensor also shows as a device mismatch.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

aten = torch.ops.aten
# operators that read host data or make the host wait for the device
HOST_OPS = {aten.lift_fresh.default, aten.lift_fresh_copy.default,
            aten._local_scalar_dense.default, aten.nonzero.default, aten.masked_select.default,
            aten.is_nonzero.default, aten.equal.default, aten.unique_dim.default,
            aten._unique2.default, aten.item.default}


class HostDataRecorder(TorchDispatchMode):
    """Records, per dispatched operator, why it is unsafe under CUDA graph capture."""

    def __init__(self, known: Iterable[Tensor], device: torch.device) -> None:
        super().__init__()
        self.device = device
        self.tensors = list(known)  # kept alive so that their ids stay theirs
        self.known = {id(t) for t in self.tensors}
        self.ops: list[str] = []
        self.findings: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = str(func)
        self.ops.append(name)
        if func in HOST_OPS:
            self.findings.append(f"{name}: reads host data or syncs with the host")
        for tensor in _tensors((args, kwargs)):
            if id(tensor) not in self.known:
                self.findings.append(f"{name}: reads a tensor no operator of the step made "
                                     f"(built from host data?) of shape {tuple(tensor.shape)}")
            elif tensor.device != self.device:
                self.findings.append(f"{name}: reads a tensor on {tensor.device}, not "
                                     f"{self.device}")
        out = func(*args, **kwargs)
        for tensor in _tensors(out):
            if tensor.device != self.device:
                self.findings.append(f"{name}: makes a tensor on {tensor.device}, not "
                                     f"{self.device}")
            self.tensors.append(tensor)
            self.known.add(id(tensor))
        return out


def _tensors(tree: Any) -> list[Tensor]:
    return [leaf for leaf in tree_leaves(tree) if isinstance(leaf, Tensor)]


def graph_unsafe_ops(call: Callable[[], Any], known: Iterable[Tensor],
                     device: torch.device | str) -> list[str]:
    """Why ``call()`` (run once more, after a first run for lazy set-up) cannot be captured
    as a CUDA graph on ``device``, one line per offending operator; empty when it can.
    ``known``: the tensors it may read (its inputs, parameters and buffers)."""
    with torch.no_grad():
        call()  # lazy initialisation happens here, before capture, as in CudaGraphStep
        with HostDataRecorder(known, torch.device(device)) as recorder:
            call()
    return recorder.findings


def module_tensors(module: torch.nn.Module) -> list[Tensor]:
    """Every parameter and buffer of ``module`` (what a step may read besides its inputs)."""
    return [*module.parameters(), *module.buffers()]


def stray_tensor_attributes(module: torch.nn.Module) -> list[str]:
    """Tensors held as plain attributes of ``module``'s submodules: ``.to()`` moves none of
    them, so a step reading one reads it on the wrong device or dtype."""
    return [f"{prefix or type(module).__name__}.{name}"
            for prefix, sub in module.named_modules()
            for name, value in vars(sub).items()
            if isinstance(value, Tensor)]
