"""Kinetics-style video folders: ``ROOT/<split>/<class name>/<clip>.mp4``.

The class index is the position of the class folder in sorted order (for the real set this
is the Kinetics-600 order the package ships).  Probing every video for its frame rate and
frame count is the slow part, so the result is cached on disk as JSON and rebuilt when
the folder changes (a file added, removed, resized or touched).  Videos that cannot be
read are skipped and listed, never a crash.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate, get_worker_info

from grw_edge._io import atomic_write_path
from grw_edge._progress import progress
from grw_edge.data.video import (
    VIDEO_SUFFIXES,
    Sampling,
    VideoDecodeError,
    clip_indices,
    list_files,
    probe_video,
    read_frames,
)
from grw_edge.errors import GrwEdgeError
from grw_edge.preprocess import preprocess_frames

INDEX_VERSION = 3
REPLACEMENT_TRIES = 8  # other clips tried in place of one that fails to decode


class DatasetError(GrwEdgeError):
    """A dataset folder that is missing or holds nothing usable."""


@dataclass
class VideoIndex:
    """Every video of one split with its label, frame rate and frame count; and the failures."""

    root: str
    split: str
    classes: list[str]
    videos: list[dict] = field(default_factory=list)  # path, label, fps, num_frames, pixels,
    # and times (seconds) where the frames are not evenly spaced
    failed: list[dict] = field(default_factory=list)  # path (relative), reason
    unsupported: list[str] = field(default_factory=list)  # other files (relative paths)


def default_cache_dir() -> Path:
    base = os.environ.get("GRW_EDGE_CACHE") or Path.home() / ".cache" / "grw-edge"
    return Path(base) / "video-index"


def build_index(root: str | os.PathLike[str], split: str, *, workers: int = 4,
                cache_dir: str | os.PathLike[str] | None = None) -> VideoIndex:
    """The split's video index, from the cache when the folder has not changed."""
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        raise DatasetError(f"no split folder {split_dir}; expected ROOT/{split}/<class>/<video>")
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if not classes:
        raise DatasetError(f"{split_dir} has no class folders")
    listed = [(label, path) for label, name in enumerate(classes)
              for path in list_files(split_dir / name)]  # one listing per folder
    files = [(label, path) for label, path in listed if path.suffix.lower() in VIDEO_SUFFIXES]
    others = sorted({*list_files(split_dir), *(path for _, path in listed)}
                    - {path for _, path in files})
    fingerprint = _fingerprint(split_dir, [path for _, path in files] + others)
    cache = Path(cache_dir or default_cache_dir()) / f"{_key(split_dir)}.json"
    cached = _load_cache(cache, fingerprint)
    if cached is not None:
        return cached
    index = VideoIndex(str(Path(root).resolve()), split, classes,
                       unsupported=[str(path.relative_to(split_dir)) for path in others])

    def probe(item: tuple[int, Path]) -> tuple[int, Path, object]:
        label, path = item
        if not path.exists():
            return label, path, VideoDecodeError(f"dangling symlink to {os.readlink(path)}")
        try:
            return label, path, probe_video(path)
        except VideoDecodeError as error:
            return label, path, error

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(progress(pool.map(probe, files), desc=f"indexing {split}",
                                total=len(files), unit="video"))
    for label, path, info in results:
        relative = str(path.relative_to(split_dir))
        if isinstance(info, VideoDecodeError):
            index.failed.append({"path": relative, "reason": str(info)})
        else:
            index.videos.append({"path": relative, "label": label, "fps": info.fps,
                                 "num_frames": info.num_frames,
                                 "pixels": info.width * info.height}
                                | ({"times": list(info.times)} if info.times else {}))
    _save_cache(cache, fingerprint, index)
    return index


def _key(split_dir: Path) -> str:
    return hashlib.sha256(str(split_dir.resolve()).encode()).hexdigest()[:20]


def _fingerprint(split_dir: Path, paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        stat = path.lstat()  # a dangling link counts too
        digest.update(f"{path.relative_to(split_dir)}\0{stat.st_size}\0{stat.st_mtime_ns}\n"
                      .encode())
    return digest.hexdigest()


def _load_cache(cache: Path, fingerprint: str) -> VideoIndex | None:
    try:
        data = json.loads(cache.read_text())
    except (OSError, ValueError):
        return None
    if data.get("version") != INDEX_VERSION or data.get("fingerprint") != fingerprint:
        return None
    return VideoIndex(**data["index"])


def _save_cache(cache: Path, fingerprint: str, index: VideoIndex) -> None:
    payload = {"version": INDEX_VERSION, "fingerprint": fingerprint, "index": index.__dict__}
    try:
        with atomic_write_path(cache) as tmp:
            tmp.write_text(json.dumps(payload))
    except OSError:
        pass  # an unwritable cache only costs the next run a re-scan


class VideoClipDataset(Dataset):
    """Clips of N frames resampled to ``fps`` (by upstream's index rule, or ``sampling="time"``
    by presentation time), transformed as the upstream evaluation does.

    An item is ``{"frames": (N, 3, R, R) float in [0, 1], "label": int, "clip": int,
    "ok": bool, "failures": [{"clip", "path", "reason"}]}``.  A clip that fails to decode is
    never handed on as frames: its item has ``ok=False`` and ``frames=None`` (the caller
    counts it), or, with ``replace_failed`` (training), the item is another clip that
    decodes, and the failures met on the way are listed.  With ``raw=True`` the frames stay
    decoded uint8 (N, H, W, 3) for the transform to run where the model is (see
    ``device_clips``).
    """

    def __init__(self, root: str | os.PathLike[str], split: str = "test", *,
                 frames_per_clip: int, fps: float | None, resize: int, crop: int,
                 workers: int = 4, cache_dir: str | os.PathLike[str] | None = None,
                 raw: bool = False, replace_failed: bool = False,
                 sampling: Sampling = "index") -> None:
        self.raw, self.replace_failed = raw, replace_failed
        self.index = build_index(root, split, workers=workers, cache_dir=cache_dir)
        self.split_dir = Path(root) / split
        self.frames_per_clip, self.fps, self.resize, self.crop = frames_per_clip, fps, resize, crop
        self.clips: list[tuple[int, np.ndarray]] = []
        self.too_short: list[str] = []
        for number, video in enumerate(self.index.videos):
            found = clip_indices(video["num_frames"], video["fps"], fps, frames_per_clip,
                                 sampling=sampling, times=video.get("times"))
            if not found:
                self.too_short.append(video["path"])
            self.clips.extend((number, indices) for indices in found)

    @property
    def classes(self) -> list[str]:
        return self.index.classes

    def __len__(self) -> int:
        return len(self.clips)

    def clip_path(self, clip: int) -> str:
        return self.index.videos[self.clips[clip][0]]["path"]

    def __getitem__(self, clip: int) -> dict[str, object]:
        failures = []
        for candidate in self._candidates(clip):
            try:
                frames = self._decode(candidate)
            except VideoDecodeError as error:
                failures.append({"clip": candidate, "path": self.clip_path(candidate),
                                 "reason": str(error)})
                continue
            return {"frames": frames, "label": self._label(candidate), "clip": candidate,
                    "ok": True, "failures": failures}
        return {"frames": None, "label": self._label(clip), "clip": clip, "ok": False,
                "failures": failures}

    def _label(self, clip: int) -> int:
        return self.index.videos[self.clips[clip][0]]["label"]

    def _candidates(self, clip: int) -> Iterator[int]:
        """The clip, then (``replace_failed``) a few others in an order seeded by it."""
        yield clip
        if self.replace_failed:
            # a range is sampled without building a list (a million clips in Kinetics)
            tries = random.Random(clip).sample(range(len(self)),
                                               min(REPLACEMENT_TRIES + 1, len(self)))
            yield from [c for c in tries if c != clip][:REPLACEMENT_TRIES]

    def _decode(self, clip: int) -> torch.Tensor:
        """The clip's frames, transformed frame by frame as they decode, so that memory
        follows the model's input, not the source's (or raw uint8 where that is smaller);
        raises VideoDecodeError."""
        number, indices = self.clips[clip]
        video = self.index.videos[number]
        # one decoder thread per loader worker: the workers already fill the cores
        threads = 1 if get_worker_info() is not None else None
        if self.raw and video["pixels"] <= 4 * self.resize ** 2:  # uint8 no bigger than float
            return torch.from_numpy(read_frames(self.split_dir / video["path"], indices,
                                                threads=threads))
        return read_frames(self.split_dir / video["path"], indices, threads=threads,
                           transform=functools.partial(preprocess_frames, resize=self.resize,
                                                       crop=self.crop), stack=torch.stack)


def collate_clips(items: list[dict]) -> dict[str, object]:
    """The clips that decoded, collated (raw clips, whose sizes differ from video to video,
    stay a list), with every item's failures as one list under ``failures``."""
    failures = [failure for item in items for failure in item["failures"]]
    good = [{k: v for k, v in item.items() if k != "failures"} for item in items if item["ok"]]
    if not good:
        empty = torch.zeros(0, dtype=torch.int64)
        return {"frames": [], "label": empty, "clip": empty, "failures": failures}
    if all(item["frames"].dtype != torch.uint8 for item in good):
        return {**default_collate(good), "failures": failures}
    batch = default_collate([{k: v for k, v in item.items() if k != "frames"} for item in good])
    return {**batch, "frames": [item["frames"] for item in good], "failures": failures}


def device_clips(frames: torch.Tensor | list[torch.Tensor], device: torch.device, *,
                 resize: int, crop: int) -> torch.Tensor:
    """A batch (B, N, 3, R, R) on ``device``: transformed clips moved there, or raw uint8
    clips moved there first and transformed there (a quarter of the bytes to copy, and the
    resize off the loader workers)."""
    if isinstance(frames, torch.Tensor):
        return frames.to(device, non_blocking=True)
    moved = [clip.to(device, non_blocking=True) for clip in frames]
    return torch.stack([preprocess_frames(clip, resize=resize, crop=crop)
                        if clip.dtype == torch.uint8 else clip for clip in moved])
