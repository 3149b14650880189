"""Class names: the shipped Kinetics-600 list, or generic names for other heads."""
from __future__ import annotations

from importlib import resources
from pathlib import Path


def kinetics600_classes() -> list[str]:
    """The Kinetics-600 class names in index order (sorted, as the dataset folders are)."""
    text = resources.files("grw_edge.data").joinpath("kinetics600_labels.txt").read_text()
    return text.splitlines()


def class_names(num_classes: int) -> list[str]:
    """Kinetics-600 names for a 600-class head, ``class_<i>`` otherwise."""
    return kinetics600_classes() if num_classes == 600 else [f"class_{i}" for i in range(num_classes)]


def read_labels(path: str | Path) -> list[str]:
    return Path(path).read_text().splitlines()
