"""grw-edge: GRW-smoothed MoViNet video recognition from training to phones and edge boxes."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from grw_edge.checkpoints import load_checkpoint, save_checkpoint
    from grw_edge.exporters import export
    from grw_edge.loss import GrwSmoothingLoss
    from grw_edge.models import (
        GrwVideoClassifier,
        HeadConfig,
        create_model,
        random_model,
    )
    from grw_edge.registry import get_backbone, list_backbones

__version__ = "0.1.0"

_EXPORTS = {  # each export's module, imported on first use so that torch-free parts stay so
    "GrwSmoothingLoss": "grw_edge.loss",
    "GrwVideoClassifier": "grw_edge.models",
    "HeadConfig": "grw_edge.models",
    "create_model": "grw_edge.models",
    "export": "grw_edge.exporters",
    "get_backbone": "grw_edge.registry",
    "list_backbones": "grw_edge.registry",
    "load_checkpoint": "grw_edge.checkpoints",
    "random_model": "grw_edge.models",
    "save_checkpoint": "grw_edge.checkpoints",
}
__all__ = [
    "GrwSmoothingLoss",
    "GrwVideoClassifier",
    "HeadConfig",
    "create_model",
    "export",
    "get_backbone",
    "list_backbones",
    "load_checkpoint",
    "random_model",
    "save_checkpoint",
]


def __getattr__(name: str) -> Any:
    """The package's exports, imported on first access (``import grw_edge`` loads no torch)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'grw_edge' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
