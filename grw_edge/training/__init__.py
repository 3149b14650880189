"""Training with the GRW-smoothing loss: config, objective and the trainer."""
from grw_edge.training.config import TrainConfig
from grw_edge.training.trainer import Trainer, train

__all__ = ["TrainConfig", "Trainer", "train"]
