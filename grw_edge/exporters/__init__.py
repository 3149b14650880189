"""Exporters, one module per target; ``export`` picks one by name (``grw_edge.targets``).

Adding a target is one module here, one in ``runtimes/`` and a line in each registry.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
from pathlib import Path
from typing import Any

from grw_edge.errors import ExportError
from grw_edge.exporters.artifact import ExportOptions
from grw_edge.models.classifier import GrwVideoClassifier
from grw_edge.targets import TARGETS

COMMON_OPTIONS = frozenset(field.name for field in dataclasses.fields(ExportOptions))


def target_options(target: str) -> frozenset[str]:
    """Every option ``target`` accepts: the common ones and its own keyword arguments."""
    if target not in TARGETS:
        raise ExportError(f"unknown target {target!r}; choose one of: {', '.join(TARGETS)}")
    signature = inspect.signature(importlib.import_module(TARGETS[target]).export)
    own = {name for name, p in signature.parameters.items() if p.kind is p.KEYWORD_ONLY}
    return COMMON_OPTIONS | own


def export(model: GrwVideoClassifier, target: str = "onnx", out: str | Path = "artifact",
           **options: Any) -> Path:
    """Export ``model`` as an artifact directory for ``target``; returns its path.

    Common options are the fields of :class:`ExportOptions`; the rest go to the target
    (ONNX: ``opset``, ``mobile``).
    """
    unknown = sorted(set(options) - target_options(target))
    if unknown:
        raise ExportError(f"target {target!r} does not take the option(s) {', '.join(unknown)}")
    common = ExportOptions(**{k: v for k, v in options.items() if k in COMMON_OPTIONS})
    extra = {k: v for k, v in options.items() if k not in COMMON_OPTIONS}
    module = importlib.import_module(TARGETS[target])
    return module.export(model, out, common, **extra)


__all__ = ["TARGETS", "ExportOptions", "export", "target_options"]
