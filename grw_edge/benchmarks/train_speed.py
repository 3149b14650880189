"""Model-only training speed: forward + backward (cross-entropy + GRW) + AdamW on random
clips already on the device, under the trainer's mixed precision.  This is the ceiling an
input pipeline is measured against.  ``python -m grw_edge.benchmarks.train_speed`` prints JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from grw_edge.models import HeadConfig, create_model
from grw_edge.training.objective import GrwObjective


def model_only_clips_per_second(backbone: str, *, batch_size: int, frames: int,
                                resolution: int, device: str, steps: int = 30,
                                warmup: int = 5, precision: str = "bf16", T: int = 4,
                                num_classes: int = 600) -> float:
    """Clips per second of training steps on random tensors (no data loading)."""
    target = torch.device(device)
    model = create_model(backbone, head=HeadConfig(256, 2, 4, 512, num_classes), T=T).to(target)
    objective = GrwObjective(model, T=T, grw_weight=0.01)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    autocast = dtype is not None and target.type == "cuda"
    X = torch.rand(batch_size, frames, 3, resolution, resolution, device=target)
    y = torch.randint(num_classes, (batch_size,), device=target)

    def step() -> None:
        with torch.autocast(target.type, dtype=dtype or torch.float32, enabled=autocast):
            loss, _, _ = objective(model, X, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.train()
    for _ in range(warmup):
        step()
    _synchronize(target)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _synchronize(target)
    return steps * batch_size / (time.perf_counter() - start)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="movineta0s")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=172)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp16", "fp32"])
    args = parser.parse_args()
    speed = model_only_clips_per_second(
        args.backbone, batch_size=args.batch_size, frames=args.frames,
        resolution=args.resolution, device=args.device, steps=args.steps, warmup=args.warmup,
        precision=args.precision)
    json.dump({**vars(args), "clips_per_s": speed}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
