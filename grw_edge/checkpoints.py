"""Reading and writing checkpoints, safely.

Two formats load into the same model:

* upstream snapshots (``version`` 10), the pickled dicts the GRW code writes and the
  hub publishes: ``model_state``, ``ema_weights`` (an ``AveragedModel`` state dict),
  ``num_samples``, ``transformer_params``, ``backbone``, ``T``.  They are read with
  torch's weights-only unpickler, which allows tensors, plain containers and the two
  upstream classes mapped onto inert stand-ins below; anything else is refused, so a
  checkpoint can never run code.
* grw-edge checkpoints: one safetensors file whose header metadata holds the JSON
  config; model weights under ``model.`` and EMA weights under ``ema.``.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from grw_edge._io import atomic_write_path
from grw_edge.errors import CheckpointError, HubUnavailableError
from grw_edge.models.classifier import GrwVideoClassifier, create_model
from grw_edge.models.head import HeadConfig
from grw_edge.registry import HUB_REPO_ID, BackboneSpec, get_backbone, list_backbones

UPSTREAM_VERSION = 10
UPSTREAM_TRANSFORMER_PARAMS = "grw_smoothing_models.model.attention.TransformerParams"
FORMAT_NAME = "grw-edge-checkpoint"
FORMAT_VERSION = 1
TORCH_SAVE_MAGIC = (b"PK\x03\x04", b"\x80")  # torch.save: zip archive, or legacy pickle
_BACKBONE_PREFIX = "video_backbone._encoder."
_EMBEDDING_PREFIX = _BACKBONE_PREFIX + "classifier."  # sized by the head, not the arch


class UpstreamTransformerParams:
    """Inert stand-in for upstream ``TransformerParams``: the unpickler only fills ``__dict__``."""

    def head_config(self) -> HeadConfig:
        fields = ("embed_dim", "depth", "num_heads", "mlp_dim", "num_classes")
        try:
            return HeadConfig(**{name: int(self.__dict__[name]) for name in fields})
        except KeyError as missing:
            raise CheckpointError(f"transformer_params lacks {missing}") from None


@dataclass(frozen=True)
class UpstreamBackboneRef:
    """What an upstream snapshot's pickled backbone class is read as: just its registry name."""

    name: str


@dataclass
class Snapshot:
    """The contents of a checkpoint, whatever its format."""

    path: Path
    format: str  # "upstream-v10" or "grw-edge-v1"
    backbone: str
    head: HeadConfig
    T: int
    num_samples: int
    state_dict: dict[str, Tensor]
    ema_state_dict: dict[str, Tensor] | None
    extra: dict[str, object] = field(default_factory=dict)
    hub: str | None = None  # hf://repo@revision/file when it is the published checkpoint

    @property
    def has_ema(self) -> bool:
        return self.ema_state_dict is not None

    @functools.cached_property
    def sha256(self) -> str:
        return file_sha256(self.path)


@dataclass(frozen=True)
class CheckpointOrigin:
    """Where a loaded model's weights came from; exporters record it in their manifests."""

    path: str
    sha256: str
    weights: str  # "ema" or "plain"
    num_samples: int
    hub: str | None = None  # hf://repo@revision/file when it is the published checkpoint

    @property
    def where(self) -> str:
        """Where the weights came from: the hub URL of the published file, or "file"."""
        return self.hub or "file"


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- reading

def read_snapshot(path: str | os.PathLike[str]) -> Snapshot:
    """Read a checkpoint of either format without building a model."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    with open(path, "rb") as handle:
        head = handle.read(9)
    if len(head) == 9 and head[8:9] == b"{":
        snapshot = _read_grw_edge(path)
    elif head.startswith(TORCH_SAVE_MAGIC):
        snapshot = _read_upstream(path)
    else:
        raise CheckpointError(f"{path} is not a checkpoint: neither a PyTorch file (upstream "
                              f"snapshot) nor a grw-edge safetensors file"
                              + (" (it is empty)" if not head else ""))
    detected = detect_backbone(snapshot.state_dict)
    if detected != snapshot.backbone:
        raise CheckpointError(
            f"{path} says its backbone is {snapshot.backbone} but its weights are "
            f"{detected}'s; the file is inconsistent")
    return snapshot


def _read_upstream(path: Path) -> Snapshot:
    allowed = [(UpstreamTransformerParams, UPSTREAM_TRANSFORMER_PARAMS)]
    allowed += [(UpstreamBackboneRef(name), get_backbone(name).upstream_class)
                for name in list_backbones()]
    try:
        with torch.serialization.safe_globals(allowed):
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).splitlines()
        detail = next((line.strip() for line in reason if "Unsupported global" in line),
                      reason[0] if reason else "unknown content")
        raise CheckpointError(
            f"refused to load {path}: it holds objects other than weights and could run "
            f"code ({detail}); only trusted GRW checkpoints can be loaded") from None
    except Exception as error:  # torch raises many types for damaged files
        reason = str(error).splitlines()
        raise CheckpointError(f"{path} is not a readable checkpoint: {type(error).__name__}"
                              + (f": {reason[0]}" if reason else "")) from None
    if not isinstance(raw, dict) or "model_state" not in raw:
        raise CheckpointError(f"{path} is not a GRW snapshot (no 'model_state' entry)")
    if raw.get("version") != UPSTREAM_VERSION:
        raise CheckpointError(f"{path} is an upstream snapshot of version {raw.get('version')}; "
                              f"only version {UPSTREAM_VERSION} (the published one) is supported")
    params = raw.get("transformer_params")
    if not isinstance(params, UpstreamTransformerParams):
        raise CheckpointError(f"{path} has no transformer_params entry")
    state_dict = _tensor_dict(raw["model_state"], path, "model_state")
    pickled_backbone = raw.get("backbone")
    backbone = (pickled_backbone.name if isinstance(pickled_backbone, UpstreamBackboneRef)
                else detect_backbone(state_dict))
    ema = raw.get("ema_weights")
    ema_state = None
    if ema is not None:
        ema = _tensor_dict(ema, path, "ema_weights")
        ema_state = {key[len("module."):]: value for key, value in ema.items()
                     if key.startswith("module.")}
    return Snapshot(path=path, format=f"upstream-v{UPSTREAM_VERSION}", backbone=backbone,
                    head=params.head_config(), T=int(raw["T"]),
                    num_samples=int(raw.get("num_samples", 0)), state_dict=state_dict,
                    ema_state_dict=ema_state)


def _tensor_dict(value: object, path: Path, entry: str) -> dict[str, Tensor]:
    if not isinstance(value, dict) or not all(isinstance(v, Tensor) for v in value.values()):
        raise CheckpointError(f"{path}: entry {entry!r} is not a dictionary of tensors")
    return dict(value)


def _read_grw_edge(path: Path) -> Snapshot:
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint: {error}") from None
    if metadata.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path} is a safetensors file but not a grw-edge checkpoint")
    try:
        config = json.loads(metadata["config"])
        version = int(metadata["format_version"])
    except (KeyError, ValueError) as error:
        raise CheckpointError(f"{path} has damaged grw-edge metadata ({error})") from None
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer grw-edge (format {version}); "
                              f"upgrade grw-edge to read it")
    model = {key[len("model."):]: t for key, t in tensors.items() if key.startswith("model.")}
    ema = {key[len("ema."):]: t for key, t in tensors.items() if key.startswith("ema.")}
    return Snapshot(path=path, format=f"grw-edge-v{version}", backbone=config["backbone"],
                    head=HeadConfig(**config["head"]), T=int(config["T"]),
                    num_samples=int(config.get("num_samples", 0)), state_dict=model,
                    ema_state_dict=ema or None, extra=config.get("extra", {}))


@functools.cache
def _reference_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """Backbone parameter shapes of a registered architecture (built on the meta device)."""
    with torch.device("meta"):
        model = create_model(name)
    return _architecture_shapes(model.state_dict())


def _architecture_shapes(state_dict: dict[str, Tensor]) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in state_dict.items()
            if key.startswith(_BACKBONE_PREFIX) and not key.startswith(_EMBEDDING_PREFIX)}


def detect_backbone(state_dict: dict[str, Tensor]) -> str:
    """Name of the registered backbone whose layout the weights have, key for key."""
    shapes = _architecture_shapes(state_dict)
    mismatches = {}
    for name in list_backbones():
        reference = _reference_shapes(name)
        differing = set(reference.items()) ^ set(shapes.items())
        if not differing:
            return name
        mismatches[name] = len(differing)
    closest = min(mismatches, key=mismatches.__getitem__)
    raise CheckpointError(
        f"the weights match no registered backbone (closest: {closest}, "
        f"{mismatches[closest]} tensors differ); registered: {', '.join(list_backbones())}")


# --------------------------------------------------------------------------- loading

def load_checkpoint(source: str | os.PathLike[str], *, ema: bool = False,
                    backbone: str | None = None) -> GrwVideoClassifier:
    """An eval-mode model from a checkpoint file, or from the hub given a backbone name.

    ``ema`` picks the EMA weights; ``backbone``, when given, must match the checkpoint.
    """
    snapshot = open_snapshot(source)
    path = snapshot.path
    if backbone is not None and get_backbone(backbone).name != snapshot.backbone:
        raise CheckpointError(
            f"{path} holds {snapshot.backbone} weights, not {get_backbone(backbone).name}; "
            f"pass --backbone {snapshot.backbone} or a {get_backbone(backbone).name} checkpoint")
    return model_from_snapshot(snapshot, ema=ema)


def resolve_checkpoint(source: str | os.PathLike[str]) -> Path:
    """A local checkpoint path: the file itself, or the published one for a backbone name."""
    path = Path(source)
    if not path.exists() and str(source).strip().lower() in list_backbones():
        return download_checkpoint(str(source))
    return path


def open_snapshot(source: str | os.PathLike[str]) -> Snapshot:
    """Read a checkpoint file, or the published one (through the HF cache) for a backbone name,
    noting the hub URL in the latter case."""
    path = resolve_checkpoint(source)
    snapshot = read_snapshot(path)
    if path != Path(source):
        snapshot.hub = (f"hf://{HUB_REPO_ID}@{path.parent.name}/"
                        f"{get_backbone(str(source)).hub_filename}")
    return snapshot


def describe_checkpoint(source: str | os.PathLike[str]) -> dict[str, object]:
    """What ``grw-edge info`` shows: backbone, sizes, T, EMA, sample count, provenance."""
    snapshot = open_snapshot(source)
    model = model_from_snapshot(snapshot)
    backbone_params = sum(p.numel() for p in model.video_backbone.parameters())
    total_params = sum(p.numel() for p in model.parameters())
    spec = model.backbone_spec
    return {
        "path": str(snapshot.path),
        "from": snapshot.hub or "file",
        "format": snapshot.format,
        "sha256": snapshot.sha256,
        "backbone": snapshot.backbone,
        "mode": "streaming" if spec.causal else "clip",
        "parameters": {"backbone": backbone_params, "head": total_params - backbone_params,
                       "total": total_params},
        "head": snapshot.head.to_dict(),
        "T": snapshot.T,
        "ema": snapshot.has_ema,
        "num_samples": snapshot.num_samples,
        "evaluation": {"resize": spec.resize, "crop": spec.resolution,
                       "frames": spec.frames_per_clip, "fps": spec.fps},
    }


def model_from_snapshot(snapshot: Snapshot, *, ema: bool = False) -> GrwVideoClassifier:
    """Build the model a snapshot describes and load its plain or EMA weights strictly."""
    if ema and snapshot.ema_state_dict is None:
        raise CheckpointError(f"{snapshot.path} has no EMA weights; load it without --ema")
    weights = snapshot.ema_state_dict if ema else snapshot.state_dict
    assert weights is not None
    model = create_model(snapshot.backbone, head=snapshot.head, T=snapshot.T)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        first = next((line.strip() for line in str(error).splitlines()[1:] if line.strip()), "")
        raise CheckpointError(
            f"{snapshot.path} does not fit a {snapshot.backbone} model with head "
            f"{snapshot.head.to_dict()}: {first}") from None
    model.origin = CheckpointOrigin(str(snapshot.path), snapshot.sha256,
                                    "ema" if ema else "plain", snapshot.num_samples, snapshot.hub)
    return model.eval()


# --------------------------------------------------------------------------- writing

def save_checkpoint(model: GrwVideoClassifier, path: str | os.PathLike[str], *,
                    ema_state_dict: dict[str, Tensor] | None = None, num_samples: int = 0,
                    extra: dict[str, object] | None = None) -> Path:
    """Write a grw-edge checkpoint (safetensors + JSON metadata) atomically."""
    config = {"backbone": model.backbone_spec.name, "head": model.head_config.to_dict(),
              "T": model.T, "num_samples": num_samples, "extra": extra or {}}
    tensors = {f"model.{key}": value.detach().cpu().contiguous()
               for key, value in model.state_dict().items()}
    if ema_state_dict is not None:
        tensors.update({f"ema.{key}": value.detach().cpu().contiguous()
                        for key, value in ema_state_dict.items()})
    metadata = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION),
                "config": json.dumps(config)}
    with atomic_write_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(path)


# --------------------------------------------------------------------------- hub

def download_checkpoint(backbone: str, *, revision: str | None = None,
                        cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Fetch a published checkpoint into the Hugging Face cache (HF_HOME, HF_HUB_CACHE and
    HF_HUB_OFFLINE are honoured) and return its local path."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
    )

    spec: BackboneSpec = get_backbone(backbone)
    where = f"{spec.hub_filename} from the Hugging Face hub ({HUB_REPO_ID})"
    advice = ("download it on a machine with network and pass the file instead "
              "(--checkpoint PATH), or fill the HF cache")
    try:
        return Path(hf_hub_download(HUB_REPO_ID, spec.hub_filename, revision=revision,
                                    cache_dir=cache_dir))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as error:
        reason = ("offline mode is on (HF_HUB_OFFLINE)" if _offline(error)
                  else "the hub is unreachable")
        raise HubUnavailableError(f"cannot get {where}: {reason} and the file is not in the "
                                  f"local cache; {advice}") from None
    except (HfHubHTTPError, EntryNotFoundError, OSError) as error:
        raise HubUnavailableError(f"cannot get {where}: {str(error).splitlines()[0]}; "
                                  f"{advice}") from None


def _offline(error: Exception) -> bool:
    from huggingface_hub import constants
    from huggingface_hub.errors import OfflineModeIsEnabled

    return isinstance(error, OfflineModeIsEnabled) or bool(constants.HF_HUB_OFFLINE)
