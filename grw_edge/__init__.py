"""grw-edge: GRW-smoothed MoViNet video recognition from training to phones and edge boxes."""
from grw_edge.checkpoints import load_checkpoint, save_checkpoint
from grw_edge.exporters import export
from grw_edge.loss import GrwSmoothingLoss
from grw_edge.models import GrwVideoClassifier, HeadConfig, create_model, random_model
from grw_edge.registry import get_backbone, list_backbones

__version__ = "0.1.0"

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
