"""Shared test helpers: the upstream fixtures folder and writers of upstream-format snapshots."""
from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from torch.optim.swa_utils import AveragedModel

from grw_edge.checkpoints import UPSTREAM_TRANSFORMER_PARAMS
from grw_edge.exporters import export
from grw_edge.models import GrwVideoClassifier, HeadConfig, create_model, randomize_
from grw_edge.registry import HUB_REPO_ID

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = PROJECT_ROOT.parent / "shared" / "fixtures"


def _install_module(monkeypatch: pytest.MonkeyPatch, dotted: str) -> types.ModuleType:
    """Register ``dotted`` and its parents as empty modules so pickle can name classes in it."""
    parts = dotted.split(".")
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        if name not in sys.modules:
            monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    return sys.modules[dotted]


@pytest.fixture
def upstream_classes(monkeypatch: pytest.MonkeyPatch):
    """Classes with the upstream module paths, as the upstream code pickles them."""

    def make(backbone_class_path: str) -> tuple[type, type]:
        params_module, params_name = UPSTREAM_TRANSFORMER_PARAMS.rsplit(".", 1)
        module = _install_module(monkeypatch, params_module)

        def init(self, embed_dim, depth, num_heads, mlp_dim, num_classes):
            self.embed_dim, self.depth, self.num_heads = embed_dim, depth, num_heads
            self.mlp_dim, self.num_classes = mlp_dim, num_classes

        params_cls = type(params_name, (), {"__init__": init, "__module__": params_module})
        monkeypatch.setattr(module, params_name, params_cls, raising=False)
        backbone_module, backbone_name = backbone_class_path.rsplit(".", 1)
        module = _install_module(monkeypatch, backbone_module)
        backbone_cls = type(backbone_name, (), {"__module__": backbone_module})
        monkeypatch.setattr(module, backbone_name, backbone_cls, raising=False)
        return params_cls, backbone_cls

    return make


@pytest.fixture
def write_upstream_snapshot(upstream_classes):
    """Write ``model`` the way upstream ``ActionRecognitionModel.save`` does (version 10)."""

    def write(model: GrwVideoClassifier, path: Path, *, ema_model: GrwVideoClassifier | None = None,
              num_samples: int = 1234, backbone_class: str | None = None) -> Path:
        params_cls, backbone_cls = upstream_classes(
            backbone_class or model.backbone_spec.upstream_class)
        head = model.head_config
        ema_weights = None
        if ema_model is not None:
            ema_weights = AveragedModel(ema_model, use_buffers=True).state_dict()
        snapshot = {
            "model_state": model.state_dict(),
            "ema_weights": ema_weights,
            "num_samples": num_samples,
            "transformer_params": params_cls(head.embed_dim, head.depth, head.num_heads,
                                             head.mlp_dim, head.num_classes),
            "backbone": backbone_cls,
            "T": model.T,
            "version": 10,
        }
        torch.save(snapshot, path)
        return path

    return write


class HubCache:
    """An offline Hugging Face cache that a test fills with upstream snapshots standing in for
    the published files."""

    revision = "0123456789abcdef0123456789abcdef01234567"

    def __init__(self, root: Path, write_snapshot) -> None:
        self.root, self._write_snapshot = root, write_snapshot
        self.env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(root)}

    def put(self, model: GrwVideoClassifier) -> Path:
        """Cache ``model`` as its backbone's published file; return the cached path."""
        repo = self.root / f"models--{HUB_REPO_ID.replace('/', '--')}"
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(self.revision)
        folder = repo / "snapshots" / self.revision
        folder.mkdir(parents=True, exist_ok=True)
        return self._write_snapshot(model, folder / model.backbone_spec.hub_filename)


@pytest.fixture
def hub_cache(tmp_path, write_upstream_snapshot) -> HubCache:
    cache = HubCache(tmp_path / "hf-cache", write_upstream_snapshot)
    cache.root.mkdir()
    return cache


def run_grw_edge(*args: str, env: dict[str, str], cwd: Path | None = None,
                 timeout: float = 120) -> subprocess.CompletedProcess:
    """The grw-edge command in a fresh process (huggingface_hub reads its variables at import)."""
    return subprocess.run([sys.executable, "-m", "grw_edge.cli", *args], capture_output=True,
                          text=True, env={**os.environ, **env}, cwd=cwd, timeout=timeout)


def require_fixtures() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"upstream fixtures not found at {FIXTURES} (they live in ../shared/fixtures)")
    return FIXTURES


SMALL_HEAD = HeadConfig(embed_dim=64, depth=1, num_heads=2, mlp_dim=128, num_classes=600)


def small_random_model(name: str, seed: int = 0) -> GrwVideoClassifier:
    """A backbone with a small head and deterministic random weights, in eval mode."""
    return randomize_(create_model(name, head=SMALL_HEAD), seed).eval()


ONNX_ARTIFACTS = {"movineta0s": {"fused": True, "mobile": True}, "movineta1s": {"frames_per_step": 2},
                  "movineta2s": {}, "movineta3b": {}}
LITERT_SIDE = 32


class Artifacts(dict):
    """Backbone -> its small ONNX artifact below ``root``, exported when first asked for (a
    test file run alone pays only for the backbones it reads)."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def __missing__(self, name: str) -> Path:
        self[name] = export(small_random_model(name), "onnx", self.root / name, resolution=48,
                            parity_frames=6, **ONNX_ARTIFACTS[name])
        return self[name]


def export_litert_a0s(directory: Path) -> Path:
    """The small LiteRT A0S artifact the LiteRT and JS tests read (weights: seed 5)."""
    return export(small_random_model("movineta0s", 5), "litert", directory, resolution=LITERT_SIDE,
                  parity_frames=8)


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Artifacts:
    """One small ONNX artifact per backbone, exported once for the whole run (the ONNX and
    TensorRT tests read them)."""
    return Artifacts(tmp_path_factory.mktemp("artifacts"))


@pytest.fixture(scope="session")
def litert_artifact(tmp_path_factory) -> Path | None:
    """The small LiteRT A0S artifact, exported once for the whole run; None without
    litert-torch (grw-edge[litert])."""
    try:
        import litert_torch  # noqa: F401
    except ImportError:
        return None
    return export_litert_a0s(tmp_path_factory.mktemp("litert") / "a0s")
