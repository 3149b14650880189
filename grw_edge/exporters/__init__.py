"""Exporters, one module per target; ``export`` picks one by name.

Adding a target is one module here, one in ``runtimes/`` and a line in each registry.
"""
from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any

from grw_edge.errors import ExportError
from grw_edge.exporters.artifact import ExportOptions
from grw_edge.models.classifier import GrwVideoClassifier

TARGETS = {
    "onnx": "grw_edge.exporters.onnx",
}


def export(model: GrwVideoClassifier, target: str = "onnx", out: str | Path = "artifact",
           **options: Any) -> Path:
    """Export ``model`` as an artifact directory for ``target``; returns its path.

    Common options are the fields of :class:`ExportOptions`; the rest go to the target
    (ONNX: ``opset``, ``mobile``).
    """
    if target not in TARGETS:
        raise ExportError(f"unknown target {target!r}; choose one of: {', '.join(TARGETS)}")
    fields = {field.name for field in dataclasses.fields(ExportOptions)}
    common = ExportOptions(**{k: v for k, v in options.items() if k in fields})
    extra = {k: v for k, v in options.items() if k not in fields}
    module = importlib.import_module(TARGETS[target])
    return module.export(model, out, common, **extra)


__all__ = ["TARGETS", "ExportOptions", "export"]
