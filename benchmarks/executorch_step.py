"""Per-frame time of the A0S streaming step under ExecuTorch with the XNNPACK delegate.

ExecuTorch pins its own torch, so it runs from an environment of its own that sees the
project's packages read-only (the project's venv is never changed):

    python3 -m venv /work/venv-et && /work/venv-et/bin/pip install executorch
    echo /work/main/.venv/lib/python3.11/site-packages \\
        > /work/venv-et/lib/python3.11/site-packages/zz_project.pth
    PYTHONPATH=. /work/venv-et/bin/python benchmarks/executorch_step.py --threads 1

The step is the one the ONNX exporter traces (folded model, states as explicit inputs and
outputs, one frame per call); its outputs are checked against PyTorch before timing.
Weights are random: the cost of a step does not depend on them.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from grw_edge.benchmarks.timing import time_calls
from grw_edge.models import create_model, randomize_
from grw_edge.models.fusion import fold_for_inference
from grw_edge.registry import get_backbone
from grw_edge.streaming import StreamingStep, initial_states, state_specs


def build_program(backbone: str, path: Path) -> tuple[torch.nn.Module, list[torch.Tensor]]:
    """Export the streaming step of ``backbone`` to an XNNPACK-delegated ``.pte`` at ``path``."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    side = get_backbone(backbone).resolution
    folded = fold_for_inference(randomize_(create_model(backbone), 0).eval())
    specs = state_specs(folded.video_backbone, resolution=side)
    step = StreamingStep(folded.video_backbone, specs).eval()
    frame = torch.rand(1, 3, 1, side, side, generator=torch.Generator().manual_seed(0))
    inputs = [frame, *initial_states(specs)]
    with torch.no_grad():
        program = torch.export.export(step, tuple(inputs))
    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    path.write_bytes(lowered.to_executorch().buffer)
    return step, inputs


@torch.no_grad()
def max_abs_error(step: torch.nn.Module, method, inputs: list[torch.Tensor]) -> float:
    """Largest difference from PyTorch over four streamed frames (outputs and states)."""
    frame, reference, got = inputs[0], inputs[1:], inputs[1:]
    error = 0.0
    for _ in range(4):
        expected, outputs = step(frame, *reference), method.execute([frame, *got])
        error = max(error, *((a - b).abs().max().item() for a, b in zip(expected, outputs)))
        reference, got = list(expected[1:]), list(outputs[1:])
    return error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="movineta0s")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--pte", type=Path, help="Keep the .pte here, or time this one if it "
                        "exists (default: a temp file).")
    args = parser.parse_args()

    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
    from executorch.runtime import Runtime

    torch.set_num_threads(args.threads)
    _unsafe_reset_threadpool(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.pte or Path(tmp) / "step.pte"
        error = None
        if path.exists():
            method = Runtime.get().load_program(path).load_method("forward")
            inputs = [torch.rand(*method.metadata.input_tensor_meta(i).sizes())
                      for i in range(method.metadata.num_inputs())]
            inputs[1:] = [torch.zeros_like(state) for state in inputs[1:]]
        else:
            step, inputs = build_program(args.backbone, path)
            method = Runtime.get().load_program(path).load_method("forward")
            error = max_abs_error(step, method, inputs)
        frame, states = inputs[0], inputs[1:]

        def push() -> None:
            states[:] = method.execute([frame, *states])[1:]

        timing = time_calls(push, repeats=args.repeats, warmup=args.warmup)
    print(json.dumps({"backend": "executorch-xnnpack", "backbone": args.backbone,
                      "threads": args.threads, "step": timing.to_dict(),
                      "max_abs_vs_torch": error}))


if __name__ == "__main__":
    main()
