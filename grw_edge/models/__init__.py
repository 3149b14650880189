"""Model definitions: MoViNet encoders, the temporal transformer head and the GRW classifier."""
from grw_edge.models.classifier import (
    GrwVideoClassifier,
    MoViNetBackbone,
    create_model,
    random_model,
    randomize_,
)
from grw_edge.models.head import HeadConfig, TemporalTransformerHead
from grw_edge.models.movinet import FRAME_COUNT, MoViNetEncoder

__all__ = [
    "FRAME_COUNT",
    "GrwVideoClassifier",
    "HeadConfig",
    "MoViNetBackbone",
    "MoViNetEncoder",
    "TemporalTransformerHead",
    "create_model",
    "random_model",
    "randomize_",
]
