"""Accuracy on a video folder, for the PyTorch reference and/or an exported artifact.

Each predictor maps a batch of clips (B, N, 3, R, R) to logits.  The reference runs the
whole clip as the upstream evaluation does; an artifact session is streamed frame by
frame.  Under ``torchrun`` every process takes every world-size-th clip (no padding), and
the per-clip results are gathered to rank 0, so each clip counts exactly once.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from grw_edge._progress import progress
from grw_edge.data.kinetics import DatasetError, VideoClipDataset, collate_clips
from grw_edge.distributed import distributed_setup, distributed_teardown
from grw_edge.errors import GrwEdgeError
from grw_edge.models.classifier import GrwVideoClassifier
from grw_edge.runtimes import StreamingSession

Predictor = Callable[[torch.Tensor], np.ndarray]


def reference_predictor(model: GrwVideoClassifier, device: torch.device | str = "cpu"
                        ) -> Predictor:
    """The PyTorch model on whole clips, on ``device``."""
    model.eval().to(device)

    def predict(clips: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            clips = clips.to(device, non_blocking=True)
            return model.classify(model.video_backbone(clips)).cpu().numpy()

    return predict


def session_predictor(session: StreamingSession) -> Predictor:
    """An artifact session, fed each clip frame by frame from a fresh state."""
    if session.manifest.batch != 1:
        raise GrwEdgeError("evaluate an artifact exported with --batch 1")

    def predict(clips: torch.Tensor) -> np.ndarray:
        logits = []
        for clip in clips:
            session.embed_clip(clip.transpose(0, 1)[None].numpy())
            logits.append(session.classify()[0])
        return np.stack(logits)

    return predict


def label_map(dataset_classes: Sequence[str], model_classes: Sequence[str]) -> np.ndarray:
    """Model logit index of each dataset class: by name when all names match, else by
    position (a model trained on this folder's classes)."""
    position = {name: i for i, name in enumerate(model_classes)}
    if all(name in position for name in dataset_classes):
        return np.array([position[name] for name in dataset_classes])
    if len(dataset_classes) <= len(model_classes):
        return np.arange(len(dataset_classes))
    raise GrwEdgeError(f"the data has {len(dataset_classes)} classes but the model only "
                       f"{len(model_classes)}, and their names differ")


@dataclass
class Scores:
    """Accuracy of one predictor."""

    top1: float
    top5: float
    loss: float


@dataclass
class EvalReport:
    """What ``grw-edge eval`` prints: the scores, and what became of every file in the split."""

    clips: int
    seconds: float
    scores: dict[str, Scores]
    agreement: dict[str, float] = field(default_factory=dict)  # compare mode only
    used: list[str] = field(default_factory=list)  # files with at least one scored clip
    too_short: list[str] = field(default_factory=list)  # shorter than one clip
    unreadable: list[dict] = field(default_factory=list)  # {"path", "reason"}
    failed_clips: list[dict] = field(default_factory=list)  # {"clip", "path", "reason"}
    unsupported: list[str] = field(default_factory=list)  # not a video suffix
    not_selected: list[str] = field(default_factory=list)  # no clip chosen (--max-clips)
    selected: int = 0  # clips chosen, scored or failed

    @property
    def clips_per_second(self) -> float:
        return self.clips / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "clips_per_second": self.clips_per_second}


def chosen_clips(total: int, max_clips: int | None) -> list[int]:
    """All clips, or ``max_clips`` spread evenly over the index (so every class is seen)."""
    if max_clips is None or max_clips >= total:
        return list(range(total))
    return sorted({int(round(x)) for x in np.linspace(0, total - 1, max_clips)})


def evaluate(dataset: VideoClipDataset, predictors: dict[str, Predictor],
             model_classes: Sequence[str], *, batch_size: int = 8, workers: int = 0,
             max_clips: int | None = None) -> EvalReport | None:
    """Score every predictor on the dataset; returns the report on rank 0, None elsewhere."""
    if len(dataset) == 0:
        unreadable = [failure["path"] for failure in dataset.index.failed]
        listed = ", ".join(unreadable[:5]) + (f" and {len(unreadable) - 5} more"
                                              if len(unreadable) > 5 else "")
        raise DatasetError(f"no clips of {dataset.frames_per_clip} frames at {dataset.fps} fps "
                           f"in {dataset.split_dir} ({len(dataset.too_short)} videos too "
                           f"short, {len(unreadable)} unreadable"
                           + (f": {listed}" if unreadable else "")
                           + "); use shorter clips (--frames) or a lower --fps"
                           + (", and check the unreadable files" if unreadable else ""))
    rank, world = distributed_setup()
    selected = chosen_clips(len(dataset), max_clips)
    mine = selected[rank::world]
    loader = DataLoader(Subset(dataset, mine), batch_size=batch_size, num_workers=workers,
                        collate_fn=collate_clips)
    start = time.perf_counter()
    records = []
    for batch in progress(loader, desc="eval", unit="batch"):
        records.extend({"clip": f["clip"], "ok": False, "reason": f["reason"]}
                       for f in batch["failures"])  # never shown to a model
        if not len(batch["label"]):
            continue
        outputs = {name: predict(batch["frames"]) for name, predict in predictors.items()}
        for i, clip in enumerate(batch["clip"].tolist()):
            records.append({"clip": clip, "ok": True, "label": int(batch["label"][i]),
                            "logits": {name: out[i] for name, out in outputs.items()}})
    if world > 1:
        gathered: list[list[dict]] = [[] for _ in range(world)]
        dist.all_gather_object(gathered, records)
        records = [record for part in gathered for record in part]
        distributed_teardown()
    seconds = time.perf_counter() - start
    if rank != 0:
        return None
    by_clip = {record["clip"]: record for record in records}
    if sorted(by_clip) != selected or len(records) != len(selected):
        raise GrwEdgeError("distributed evaluation lost or repeated clips")
    return summarize([by_clip[c] for c in selected], dataset, model_classes, seconds)


def summarize(records: list[dict], dataset: VideoClipDataset, model_classes: Sequence[str],
              seconds: float) -> EvalReport:
    mapping = label_map(dataset.classes, model_classes)
    good = [r for r in records if r["ok"]]
    if not good:
        raise DatasetError(f"every selected clip in {dataset.split_dir} failed to decode")
    targets = torch.tensor([int(mapping[r["label"]]) for r in good])
    names = list(records[0]["logits"]) if records else []
    scores, predictions = {}, {}
    for name in names:
        logits = torch.from_numpy(np.stack([r["logits"][name] for r in good]))
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        scores[name] = Scores(float((top[:, 0] == targets).float().mean()),
                              float((top == targets[:, None]).any(1).float().mean()),
                              float(F.cross_entropy(logits, targets)))
        predictions[name] = logits
    agreement = {}
    if len(names) == 2:
        first, second = (predictions[n] for n in names)
        agreement = {"top1_agreement": float((first.argmax(1) == second.argmax(1)).float().mean()),
                     "max_abs_logits": float((first - second).abs().max())}
    failed = [{"clip": r["clip"], "path": dataset.clip_path(r["clip"]), "reason": r["reason"]}
              for r in records if not r["ok"]]
    used = sorted({dataset.clip_path(r["clip"]) for r in good})
    touched = set(used) | {f["path"] for f in failed}
    return EvalReport(len(good), seconds, scores, agreement, used=used,
                      too_short=list(dataset.too_short), unreadable=list(dataset.index.failed),
                      failed_clips=failed, unsupported=list(dataset.index.unsupported),
                      not_selected=sorted({dataset.clip_path(c) for c in range(len(dataset))}
                                          - touched), selected=len(records))
