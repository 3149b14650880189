"""Where the float32 streaming step's time goes, by ablation: the step as shipped, and the same
step with its temporal-conv memory, its SE memory, or both taken out (each then sees only the
current frame), timed under onnxruntime in one process, in alternating blocks of steps.

    python benchmarks/step_anatomy.py --backbone movineta0s --threads 1

The ablated graphs compute something else (they are not models anyone should ship); they show
how much of a step is the memory between frames, which is the part the TF Lite peer runs
differently.  Weights are random: the cost of a step does not depend on them.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import Tensor, nn

from grw_edge._tables import format_table
from grw_edge.exporters.onnx import DEFAULT_OPSET, NEXT_SUFFIX, export_graph
from grw_edge.models import create_model, randomize_
from grw_edge.models import movinet
from grw_edge.models.fusion import fold_for_inference
from grw_edge.models.layers import pad_same
from grw_edge.registry import get_backbone

ABLATIONS = {
    "as shipped": (),
    "no temporal-conv memory": ("temporal",),
    "no SE memory": ("se",),
    "no memory at all": ("temporal", "se"),
}


def _current_frame_temporal(self: movinet.CausalConvBlock, x: Tensor, batch: int,
                            buffer: Tensor | None = None) -> tuple[Tensor, None]:
    """The temporal conv's last tap only: what it computes when every earlier frame is 0."""
    x = self.conv_1(pad_same(x, self.spatial_kernel, self.spatial_stride))
    conv = self.conv_2.conv2d
    y = x * conv.weight[:, 0, -1, 0].reshape(1, -1, 1, 1)
    if conv.bias is not None:
        y = y + conv.bias.reshape(1, -1, 1, 1)
    return self.conv_2.act(self.conv_2.norm(y)), None


def _current_frame_se(self: movinet.SqueezeExcitation, x: Tensor, batch: int,
                      means: Tensor | None = None, ticks: object = None) -> tuple[Tensor, None]:
    """The causal SE with the current frame's mean standing in for the cumulative one."""
    spatial_mean = x.mean(dim=(2, 3), keepdim=True)
    pooled = torch.cat((spatial_mean, spatial_mean), dim=1)
    return self.activation_2(self.fc2(self.activation_1(self.fc1(pooled)))) * x, None


@contextlib.contextmanager
def ablated(parts: tuple[str, ...]) -> Iterator[None]:
    """Swap the named parts' forwards for their memoryless versions while exporting."""
    swaps = {"temporal": (movinet.CausalConvBlock, _current_frame_temporal),
             "se": (movinet.SqueezeExcitation, _current_frame_se)}
    saved = {part: swaps[part][0].forward for part in parts}
    try:
        for part in parts:
            swaps[part][0].forward = swaps[part][1]
        yield
    finally:
        for part, forward in saved.items():
            swaps[part][0].forward = forward


class Step(nn.Module):
    """The streaming step over whichever states the (ablated) encoder still keeps."""

    def __init__(self, backbone: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.backbone, self.names = backbone, names

    def forward(self, frames: Tensor, *states: Tensor) -> tuple[Tensor, ...]:
        embeddings, next_states = self.backbone.step(frames, dict(zip(self.names, states)))
        return embeddings, *(next_states[name] for name in self.names)


def export_step(folded: nn.Module, side: int, path: Path) -> None:
    """Export the folded model's step at ``side`` pixels with the states it keeps."""
    frame = torch.rand(1, 3, 1, side, side)
    with torch.no_grad():
        _, states = folded.video_backbone.step(frame)
    names = [name for name, value in states.items() if value is not None]
    args = [frame, *(torch.zeros_like(states[name]) for name in names)]
    export_graph(Step(folded.video_backbone, names), args, path,
                 input_names=["frames", *names],
                 output_names=["embeddings", *(name + NEXT_SUFFIX for name in names)],
                 opset=DEFAULT_OPSET)


def stepper(path: Path, threads: int) -> Callable[[], None]:
    """One streaming step of the graph at ``path`` per call, states carried."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    feeds = {i.name: np.zeros(i.shape, np.float32) for i in inputs}
    feeds["frames"] = np.random.default_rng(0).random(inputs[0].shape, dtype=np.float32)
    names = [i.name for i in inputs[1:]]
    outputs = [name + NEXT_SUFFIX for name in names]

    def step() -> None:
        feeds.update(zip(names, session.run(outputs, feeds)))

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="movineta0s")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--blocks", type=int, default=20, help="Blocks per graph.")
    parser.add_argument("--block", type=int, default=25, help="Steps per block.")
    args = parser.parse_args()

    side = get_backbone(args.backbone).resolution
    model = randomize_(create_model(args.backbone), 0).eval()
    steps, nodes = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, parts in ABLATIONS.items():
            path = Path(tmp) / f"{len(steps)}.onnx"
            with ablated(parts):
                export_step(fold_for_inference(model), side, path)
            nodes[label] = len(onnx.load(path).graph.node)
            steps[label] = stepper(path, args.threads)
        times: dict[str, list[float]] = {label: [] for label in steps}
        for label, step in steps.items():  # warm-up
            for _ in range(args.block):
                step()
        for _ in range(args.blocks):
            for label, step in steps.items():
                for _ in range(args.block):
                    started = time.perf_counter()
                    step()
                    times[label].append(time.perf_counter() - started)
    shipped = statistics.median(times["as shipped"])
    rows = [{"step": label, "nodes": str(nodes[label]),
             "ms (median)": f"{1e3 * statistics.median(t):.3f}",
             "x as shipped": f"{statistics.median(t) / shipped:.2f}"} for label, t in times.items()]
    print(f"{args.backbone} at {side} px, float32, onnxruntime {ort.__version__}, "
          f"{args.threads} thread(s), {args.blocks} blocks of {args.block} steps per graph:")
    print(format_table(rows, markdown=True))


if __name__ == "__main__":
    main()
