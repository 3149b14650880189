"""The training loop: AdamW with warm-up + cosine, gradient clipping, EMA weights, mixed
precision on CUDA, DistributedDataParallel under torchrun, and exact resume.

A run directory holds ``checkpoint.safetensors`` (a grw-edge checkpoint: model and EMA
weights, the config, the class names and the step; what ``export`` and ``eval`` take),
``train_state-<step>.pt`` (optimizer, scheduler, scaler and RNG states; plain tensors and
containers, read back with torch's weights-only loader) and ``metrics.jsonl``.  The state
is written before the checkpoint and the older state removed after it, so a run killed at
any moment resumes from the checkpoint's step.
"""
from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from grw_edge._io import atomic_write_path, remove_stale_temporaries
from grw_edge._progress import progress_enabled
from grw_edge.checkpoints import load_checkpoint, read_snapshot, save_checkpoint
from grw_edge.data.failures import ClipFailures
from grw_edge.data.kinetics import DatasetError, VideoClipDataset, collate_clips, device_clips
from grw_edge.distributed import distributed_setup, gather_rare, local_device
from grw_edge.errors import CheckpointError
from grw_edge.models import HeadConfig, create_model
from grw_edge.models.classifier import GrwVideoClassifier
from grw_edge.preprocess import ClipProtocol
from grw_edge.registry import get_backbone
from grw_edge.training.config import TrainConfig
from grw_edge.training.objective import GrwObjective

CHECKPOINT = "checkpoint.safetensors"
TRAIN_STATE = "train_state-{step:08d}.pt"
METRICS = "metrics.jsonl"


def build_model(cfg: TrainConfig, num_classes: int) -> GrwVideoClassifier:
    """A fresh model, or one initialised from ``cfg.init`` with a new classifier if needed."""
    if cfg.init:
        model = load_checkpoint(cfg.init, backbone=cfg.backbone)
        if model.head_config.num_classes != num_classes:
            model.attention.linear_head = torch.nn.Linear(model.head_config.embed_dim,
                                                          num_classes)
            model.head_config = HeadConfig(**{**model.head_config.to_dict(),
                                              "num_classes": num_classes})
        model.T = cfg.T
        return model.train()
    head = HeadConfig(cfg.embed_dim, cfg.head_depth, cfg.head_heads, cfg.head_mlp, num_classes)
    return create_model(cfg.backbone, head=head, T=cfg.T, dropout=cfg.dropout,
                        stochastic_depth=cfg.stochastic_depth, max_drop_path_rate=cfg.drop_path)


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases, norm scales and ReZero alphas (1-D or scalar tensors)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
    rest = [p for p in model.parameters() if p.requires_grad and p.dim() <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0}]


def epoch_batches(size: int, batch: int, epoch: int, seed: int, rank: int, world: int
                  ) -> list[list[int]]:
    """This rank's batches for one epoch: a seeded shuffle shared by all ranks is cut into
    global batches of ``batch * world`` clips, and each rank takes its slice of each, so a
    run on W processes sees what one process with W times the batch would see."""
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
    span = batch * world
    return [order[start + rank * batch:start + (rank + 1) * batch]
            for start in range(0, size - span + 1, span)]


def batches_from(step: int, size: int, batch: int, seed: int, rank: int, world: int
                 ) -> Iterator[list[int]]:
    """This rank's batches from global step ``step`` on, epoch after epoch (endless)."""
    per_epoch = len(epoch_batches(size, batch, 0, seed, rank, world))
    epoch, position = divmod(step, per_epoch)
    while True:
        yield from epoch_batches(size, batch, epoch, seed, rank, world)[position:]
        epoch, position = epoch + 1, 0


def split_first(batches: Iterator[list[int]], pieces: int) -> Iterator[list[int]]:
    """The first batch as ``pieces`` (1 to its size) near-equal pieces, then the batches as
    they come: a loader hands each batch to one worker, so the first one would be decoded by
    one worker alone while the others (and the GPU) wait; in pieces, every worker decodes a
    share."""
    first = next(batches)
    bounds = [len(first) * i // pieces for i in range(pieces + 1)]
    yield from (first[start:end] for start, end in zip(bounds, bounds[1:]))
    yield from batches


def joined_first(loader: Iterable[dict], pieces: int) -> Iterator[dict]:
    """The loader's batches with its first ``pieces`` (see :func:`split_first`) joined back
    into the first batch."""
    batches = iter(loader)
    if pieces > 1:
        yield merge_batches([next(batches) for _ in range(pieces)])
    yield from batches


def merge_batches(batches: list[dict]) -> dict:
    """Collated batches as one: tensors concatenated, lists joined (a piece in which
    nothing decoded holds empty ones)."""
    merged = {}
    for key in batches[0]:
        values = [batch[key] for batch in batches if len(batch[key])] or [batches[0][key]]
        merged[key] = (torch.cat(values) if isinstance(values[0], torch.Tensor)
                       else [item for value in values for item in value])
    return merged


def tune_kernels(device: torch.device) -> None:
    """On CUDA, let cuDNN time its kernels once per shape (clips have one shape: the cost
    is paid in the first step, every later step runs the fastest)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def loader_hint(workers: int, cuda: bool) -> str | None:
    """A line for GPU runs whose clips decode in the training process itself."""
    if not cuda or workers > 1:
        return None
    where = "one worker" if workers else "the training process"
    return (f"note: --workers {workers}: videos decode in {where}, far slower than a GPU "
            f"trains (one worker decodes about 10-15 clips/s); pass --workers N, about one "
            f"per CPU core this process may use")


def loader_options(workers: int, cuda: bool) -> dict[str, object]:
    """DataLoader settings: on a GPU, pinned batches and a deeper prefetch so the device
    never waits on decoding.  (No ``persistent_workers``: the run iterates one loader over
    an endless sampler once, so its workers start once anyway.)"""
    return {"num_workers": workers, "pin_memory": cuda,
            "prefetch_factor": 4 if workers and cuda else None}


class Trainer:
    """One training run; ``run()`` trains to ``cfg.steps`` (or ``stop_after`` steps)."""

    def __init__(self, cfg: TrainConfig, *, resume: bool = False) -> None:
        cfg.validate()
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.rank, self.world = distributed_setup()
        if self.rank == 0:
            remove_stale_temporaries(self.out)  # what a killed run left half-written
        self.device = local_device()
        tune_kernels(self.device)
        hint = loader_hint(cfg.workers, self.device.type == "cuda")
        if hint and self.rank == 0:
            print(hint, file=sys.stderr, flush=True)
        spec = get_backbone(cfg.backbone)
        protocol = ClipProtocol.for_backbone(spec, cfg.resolution).override(cfg.frames, cfg.fps,
                                                                        cfg.sampling)
        # On a GPU the loader ships decoded uint8 clips and the resize runs there.
        self.dataset = VideoClipDataset(cfg.data, cfg.split, frames_per_clip=protocol.frames,
                                        fps=protocol.fps, resize=protocol.resize,
                                        crop=protocol.crop, workers=max(1, cfg.workers),
                                        raw=self.device.type == "cuda", replace_failed=True,
                                        sampling=protocol.sampling)
        self.failures = ClipFailures(len(self.dataset), cfg.max_failed_clips)
        if len(self.dataset) < cfg.batch_size * self.world:
            raise DatasetError(f"{cfg.data}/{cfg.split} has {len(self.dataset)} clips of "
                               f"{cfg.frames} frames at {cfg.fps:g} fps: too few for batches of "
                               f"{cfg.batch_size} on {self.world} process(es)")
        torch.manual_seed(cfg.seed)
        model = build_model(cfg, len(self.dataset.classes)).to(self.device)
        if self.world > 1 and self.device.type == "cuda" and not cfg.freeze_bn:
            # Batch statistics over the global batch (SyncBatchNorm needs a GPU; on the CPU
            # each process normalises its own share, as plain DDP does).
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model
        self.objective = GrwObjective(model, T=cfg.T, grw_weight=cfg.grw_weight,
                                      alpha=cfg.grw_alpha,
                                      intermediate_weight=cfg.intermediate_weight, seed=cfg.seed)
        self.ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay),
                                 use_buffers=True)
        self.net = (DistributedDataParallel(model, device_ids=[self.device.index]
                                            if self.device.type == "cuda" else None)
                    if self.world > 1 else model)
        self.optimizer = torch.optim.AdamW(parameter_groups(model, cfg.weight_decay), lr=cfg.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, cfg.warmup_steps, cfg.steps))
        self.autocast_dtype = self._autocast_dtype()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.autocast_dtype == torch.float16)
        self.step = 0
        if resume:
            self._restore()
        self._tensorboard = _tensorboard_writer(self.out / "tensorboard") if self.rank == 0 else None

    def _autocast_dtype(self) -> torch.dtype | None:
        if self.device.type != "cuda" or self.cfg.precision == "fp32":
            return None
        if self.cfg.precision == "fp16":
            return torch.float16
        if self.cfg.precision == "bf16" or torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16

    # ------------------------------------------------------------------ the loop

    def run(self, stop_after: int | None = None) -> Path:
        cfg = self.cfg
        last = cfg.steps if stop_after is None else min(cfg.steps, self.step + stop_after)
        bar = self._bar(last)
        meter = Throughput()
        if self.step < last:
            # One loader for the whole run: its workers live across epochs and keep
            # prefetching, instead of restarting (and draining the GPU) every epoch.
            batches = batches_from(self.step, len(self.dataset), cfg.batch_size, cfg.seed,
                                   self.rank, self.world)
            pieces = min(cfg.workers, cfg.batch_size) if cfg.workers > 1 else 1
            loader = DataLoader(self.dataset, batch_sampler=split_first(batches, pieces),
                                collate_fn=collate_clips,
                                **loader_options(cfg.workers, self.device.type == "cuda"))
            for batch in meter.timed(joined_first(loader, pieces)):
                self._count_failures(batch["failures"], empty=not len(batch["label"]))
                parts = self._train_step(batch)
                self.step += 1
                bar.update(1)
                if meter.first_step_s is None:
                    _floats(parts)  # a wait for the device: the first step really ended
                    meter.first_step_done()
                else:
                    meter.count(len(batch["label"]) * self.world)
                if self.step % cfg.log_every == 0 or self.step == last:
                    record = _floats(parts)  # the one wait for the GPU per logged step
                    speed = meter.window()
                    bar.set_postfix(loss=f"{record['loss']:.3f}",
                                    **{k: f"{v:.3g}" for k, v in speed.items()})
                    self._log({**record, "lr": self.scheduler.get_last_lr()[0], **speed,
                               "failed_clips": len(self.failures)})
                if self.step % cfg.checkpoint_every == 0 or self.step == last:
                    self.save()
                if self.step >= last:
                    break
        bar.close()
        return self.out / CHECKPOINT

    def _count_failures(self, failures: list[dict], empty: bool) -> None:
        """Name each clip that failed on any rank (it was replaced by one that decodes) in
        the log, metrics.jsonl and TensorBoard; stop the run, on every rank at once, past
        ``--max-failed-clips`` of the whole dataset or when some rank's batch is empty."""
        failures, empty = gather_rare(failures, empty)
        new = self.failures.add(failures)
        if new and self.rank == 0:
            for failure in new:
                print(f"skipped clip {failure['clip']} of {failure['path']}: {failure['reason']}",
                      file=sys.stderr, flush=True)
            self._append_metrics({"failed_clips": len(self.failures), "failed": new})
            if self._tensorboard is not None:
                self._tensorboard.add_text("failed_clips", "\n".join(
                    f"{f['path']} (clip {f['clip']}): {f['reason']}" for f in new), self.step)
        self.failures.check(f"{self.cfg.data}/{self.cfg.split}")
        if empty:
            raise self.failures.none_decodes(f"{self.cfg.data}/{self.cfg.split}")

    def _train_mode(self) -> None:
        self.net.train()
        if self.cfg.freeze_bn:
            for module in self.model.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def _train_step(self, batch: dict) -> dict[str, torch.Tensor]:
        """One optimizer step; returns the loss parts, accuracy and gradient norm as
        detached device tensors (read them with ``_floats`` when logging)."""
        self._train_mode()
        loss, parts = self._forward(batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.ema.update_parameters(self.model)
        parts["grad_norm"] = grad_norm.detach()
        return parts

    def _forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The batch on this process's device through the objective, under autocast."""
        X = device_clips(batch["frames"], self.device, resize=self.dataset.resize,
                         crop=self.dataset.crop)
        y = batch["label"].to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            loss, parts, logits = self.objective(self.net, X, y)
        parts["accuracy"] = (logits.argmax(1) == y).float().mean()
        return loss, parts

    # ------------------------------------------------------------------ state

    def ema_state_dict(self) -> dict[str, torch.Tensor]:
        return {key[len("module."):]: value for key, value in self.ema.state_dict().items()
                if key.startswith("module.")}

    def save(self) -> None:
        """Write the training state, then the checkpoint (rank 0; both atomic)."""
        if self.rank != 0:
            return
        state = {
            "step": self.step, "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict(),
            "failed_clips": list(self.failures.by_clip.values()),  # the limit spans resumes
            "rng": {"torch": torch.get_rng_state(), "numpy": _numpy_rng_state(),
                    "python": _python_rng_state()},
        }
        if torch.cuda.is_available():
            state["rng"]["cuda"] = torch.cuda.get_rng_state()
        current = self.out / TRAIN_STATE.format(step=self.step)
        with atomic_write_path(current) as tmp:
            torch.save(state, tmp)
        save_checkpoint(self.model, self.out / CHECKPOINT, ema_state_dict=self.ema_state_dict(),
                        num_samples=self.step * self.cfg.batch_size * self.world,
                        extra={"step": self.step, "classes": self.dataset.classes,
                               "config": self.cfg.to_dict()})
        for old in self.out.glob(TRAIN_STATE.replace("{step:08d}", "*")):
            if old != current:
                old.unlink(missing_ok=True)

    def _restore(self) -> None:
        checkpoint = self.out / CHECKPOINT
        if not checkpoint.is_file():
            raise CheckpointError(f"nothing to resume in {self.out} (no {CHECKPOINT}); "
                                  f"start without --resume")
        snapshot = read_snapshot(checkpoint)
        state_file = self.out / TRAIN_STATE.format(step=int(snapshot.extra.get("step", -1)))
        if not state_file.is_file():
            raise CheckpointError(f"{self.out} has no training state for the checkpoint's step "
                                  f"({state_file.name}); start without --resume")
        try:
            state = torch.load(state_file, map_location="cpu", weights_only=True)
        except Exception as error:
            raise CheckpointError(f"{state_file} cannot be read: {error}") from None
        self.model.load_state_dict(snapshot.state_dict)
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(_numpy_from_tensor(state["rng"]["numpy"]))
        random.setstate(_python_from_tensor(state["rng"]["python"]))
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state(state["rng"]["cuda"])
        self.failures.add(state.get("failed_clips", []))
        self.step = int(state["step"])

    # ------------------------------------------------------------------ logging

    def _append_metrics(self, record: dict) -> None:
        """One line of metrics.jsonl: the step and ``record``."""
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / METRICS, "a") as handle:
            handle.write(json.dumps({"step": self.step, **record}) + "\n")

    def _log(self, record: dict[str, float]) -> None:
        if self.rank != 0:
            return
        self._append_metrics(record)
        if self._tensorboard is not None:
            for key, value in record.items():
                self._tensorboard.add_scalar(key, value, self.step)
        if not progress_enabled():
            fields = " ".join(f"{k}={v:.4g}" for k, v in record.items())
            print(f"step {self.step}/{self.cfg.steps} {fields}", flush=True)

    def _bar(self, last: int):
        from tqdm.auto import tqdm

        return tqdm(total=last, initial=self.step, desc="train", unit="step",
                    disable=self.rank != 0 or not progress_enabled(), dynamic_ncols=True)


class Throughput:
    """Training speed as logged: the time from the loop's start to the end of its first step
    (start-up: workers, first batches, cuDNN choices, lazy initialisation) apart from the
    clips per second of the last logging window (the steady speed), never mixed; and the
    share of that window the loop spent waiting for batches (``data_wait``: near 0 when the
    device is the limit, high when the loader is and more --workers would help)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.first_step_s: float | None = None
        self.window_start = self.started
        self.window_clips = 0
        self.window_wait = 0.0

    def timed(self, batches: Iterable[dict]) -> Iterator[dict]:
        """``batches``, counting the time each one kept the loop waiting."""
        iterator = iter(batches)
        while True:
            start = time.perf_counter()
            batch = next(iterator, None)
            if batch is None:
                return
            self.window_wait += time.perf_counter() - start
            yield batch

    def first_step_done(self) -> None:
        """The first step ended (its results were waited for): the first window opens."""
        self.window_start = time.perf_counter()
        self.first_step_s = self.window_start - self.started
        self.window_wait = 0.0  # the first batch's wait is start-up

    def count(self, clips: int) -> None:
        self.window_clips += clips

    def window(self) -> dict[str, float]:
        """The fields to log (read after a wait for the device), then a new window."""
        now = time.perf_counter()
        speed = {"first_step_s": self.first_step_s or 0.0}
        if self.window_clips:
            seconds = max(now - self.window_start, 1e-9)
            speed["clips_per_s"] = self.window_clips / seconds
            speed["data_wait"] = min(self.window_wait / seconds, 1.0)
        self.window_start, self.window_clips, self.window_wait = now, 0, 0.0
        return speed


def _floats(parts: dict[str, torch.Tensor]) -> dict[str, float]:
    """Device scalars to Python floats in one transfer."""
    values = torch.stack([value.float() for value in parts.values()]).tolist()
    return dict(zip(parts, values))


def _tensorboard_writer(directory: Path):
    """A TensorBoard writer when the tensorboard package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(directory))


def _numpy_rng_state() -> dict[str, torch.Tensor]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"keys": torch.from_numpy(keys.astype(np.int64)),
            "meta": torch.tensor([pos, has_gauss], dtype=torch.int64),
            "gauss": torch.tensor(gauss, dtype=torch.float64)}


def _numpy_from_tensor(state: dict[str, torch.Tensor]) -> tuple:
    pos, has_gauss = state["meta"].tolist()
    return ("MT19937", state["keys"].numpy().astype(np.uint32), pos, has_gauss,
            float(state["gauss"]))


def _python_rng_state() -> torch.Tensor:
    version, internal, gauss = random.getstate()
    return torch.tensor(list(internal), dtype=torch.int64)


def _python_from_tensor(state: torch.Tensor) -> tuple:
    return (3, tuple(state.tolist()), None)


def train(cfg: TrainConfig, *, resume: bool = False, stop_after: int | None = None) -> Path:
    """Train (or resume) a run; returns the checkpoint path.  Cleans up the process group."""
    try:
        return Trainer(cfg, resume=resume).run(stop_after)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
