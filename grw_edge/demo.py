"""``grw-edge demo``: the whole path offline, on the CPU, in minutes.

Synthetic yaw/pitch/roll videos -> train a small A0S with the GRW loss and the same without
(lambda = 0) -> export the GRW model to ONNX and verify it -> evaluate both -> time and count
FLOPs -> ``report.md`` with plots of the training curves and of the embedding trajectories
(the paper's warm-up figure).
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from grw_edge.benchmarks.flops import count_flops
from grw_edge.benchmarks.timing import time_calls
from grw_edge.checkpoints import load_checkpoint
from grw_edge.data.kinetics import VideoClipDataset
from grw_edge.data.synthetic import make_synthetic_dataset
from grw_edge.evaluate import evaluate, reference_predictor, session_predictor
from grw_edge.exporters import export
from grw_edge.models.classifier import GrwVideoClassifier
from grw_edge.runtimes import open as open_session
from grw_edge.training import TrainConfig, train
from grw_edge.verify import verify_artifact

BACKBONE = "movineta0s"


@dataclass(frozen=True)
class DemoSettings:
    """Sizes chosen so the whole demo runs in a few minutes on two CPU cores."""

    videos_per_class: int = 16
    test_videos_per_class: int = 6
    video_frames: int = 24
    video_size: int = 48
    fps: float = 10.0
    clip_frames: int = 8
    resolution: int = 32
    T: int = 4
    grw_weight: float = 0.05
    embed_dim: int = 64
    steps: int = 300
    batch_size: int = 8
    lr: float = 2e-3
    seed: int = 0


def run_demo(out: str | Path, settings: DemoSettings = DemoSettings(),
             echo: Callable[[str], None] = print) -> Path:
    """Run every stage into ``out`` and return the path of ``report.md``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    s = settings
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def stage(name: str) -> None:
        timings[name] = time.perf_counter()
        echo(f"[{time.perf_counter() - started:6.1f}s] {name}")

    stage("synthetic videos")
    data = out / "data"
    make_synthetic_dataset(data, videos_per_class=s.videos_per_class,
                           test_videos_per_class=s.test_videos_per_class, frames=s.video_frames,
                           size=s.video_size, fps=s.fps, seed=s.seed)
    runs = {}
    for name, weight in (("GRW", s.grw_weight), ("no GRW", 0.0)):
        stage(f"training A0S {name} (lambda = {weight:g})")
        cfg = TrainConfig(backbone=BACKBONE, data=str(data), out=str(out / "runs" / _slug(name)),
                          frames=s.clip_frames, fps=s.fps, resolution=s.resolution, T=s.T,
                          grw_weight=weight, embed_dim=s.embed_dim, head_depth=1,
                          head_heads=4, head_mlp=2 * s.embed_dim, steps=s.steps,
                          batch_size=s.batch_size, lr=s.lr, warmup_steps=10, ema_decay=0.98,
                          checkpoint_every=s.steps, log_every=10, seed=s.seed)
        runs[name] = train(cfg)
    models = {name: load_checkpoint(path) for name, path in runs.items()}

    stage("export to ONNX and verify")
    artifact = export(models["GRW"], "onnx", out / "a0s-grw-onnx", resolution=s.resolution,
                      parity_frames=s.clip_frames, overwrite=True)
    parity = verify_artifact(artifact, clips=3, frames=s.clip_frames)

    stage("evaluation on the test split")
    test = VideoClipDataset(data, "test", frames_per_clip=s.clip_frames, fps=s.fps,
                            resize=round(s.resolution * 200 / 172), crop=s.resolution)
    classes = test.classes
    scores = {}
    for name, model in models.items():
        report = evaluate(test, {name: reference_predictor(model)}, classes, batch_size=8)
        scores[name] = report.scores[name]
    session = open_session(artifact, threads=1)
    compared = evaluate(test, {"pytorch": reference_predictor(models["GRW"]),
                               "onnxruntime": session_predictor(session)}, classes)

    stage("benchmark")
    latency = _latency(models["GRW"], artifact, s.resolution)
    flops = count_flops(models["GRW"], s.clip_frames, s.resolution)

    stage("plots")
    curves = _plot_curves({name: Path(path).parent / "metrics.jsonl" for name, path in
                           runs.items()}, out / "training_curves.png")
    smoothness = _plot_trajectories(models, test, out / "trajectories.png")
    total = time.perf_counter() - started
    report = _write_report(out, s, scores, compared, parity.to_dict(), latency, flops.to_dict(),
                           smoothness, curves, total)
    echo(f"[{total:6.1f}s] wrote {report}")
    return report


def _slug(name: str) -> str:
    return name.lower().replace(" ", "-")


def _latency(model: GrwVideoClassifier, artifact: Path, resolution: int) -> dict[str, dict]:
    """Median per-frame step latency, one thread: PyTorch eager and onnxruntime."""
    torch.set_num_threads(1)
    frame = np.random.default_rng(0).random((1, 3, 1, resolution, resolution), np.float32)
    torch_frame = torch.from_numpy(frame)
    with torch.no_grad():
        _, states = model.video_backbone.step(torch_frame)
        eager = time_calls(lambda: model.video_backbone.step(torch_frame, states), repeats=50)
    session = open_session(artifact, threads=1)
    onnx = time_calls(lambda: session.push(frame), repeats=200)
    torch.set_num_threads(max(1, torch.get_num_interop_threads()))
    return {"torch eager": eager.to_dict(), "onnxruntime": onnx.to_dict()}


def _plot_curves(metrics: dict[str, Path], path: Path) -> dict[str, dict]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 3.6))
    finals = {}
    for name, file in metrics.items():
        rows = [json.loads(line) for line in file.read_text().splitlines()]
        steps = [r["step"] for r in rows]
        loss_axis.plot(steps, [r["ce"] for r in rows], label=f"{name}: cross-entropy")
        accuracy_axis.plot(steps, [r["accuracy"] for r in rows], label=name)
        finals[name] = rows[-1]
    loss_axis.set(xlabel="step", ylabel="cross-entropy", title="training loss")
    accuracy_axis.set(xlabel="step", ylabel="batch accuracy", title="training accuracy",
                      ylim=(0, 1.05))
    loss_axis.legend()
    accuracy_axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return finals


def _plot_trajectories(models: dict[str, GrwVideoClassifier], dataset: VideoClipDataset,
                       path: Path) -> dict[str, float]:
    """Per-frame normalised embeddings of test clips, projected to 2D per model (PCA), one
    line per clip coloured by class; returns each model's mean squared acceleration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = [dataset[i] for i in range(len(dataset))]
    clips = torch.stack([item["frames"] for item in items])
    labels = [item["label"] for item in items]
    figure, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4.4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    acceleration = {}
    for axis, (name, model) in zip(np.atleast_1d(axes), models.items()):
        with torch.no_grad():
            embeddings = model.ln(model.video_backbone(clips)).numpy()  # (clips, N, E)
        acceleration[name] = float((np.diff(embeddings, n=2, axis=1) ** 2).sum(-1).mean())
        flat = embeddings.reshape(-1, embeddings.shape[-1])
        centred = flat - flat.mean(0)
        _, _, basis = np.linalg.svd(centred, full_matrices=False)
        projected = (centred @ basis[:2].T).reshape(len(clips), -1, 2)
        for trajectory, label in zip(projected, labels):
            axis.plot(trajectory[:, 0], trajectory[:, 1], "-o", markersize=2, linewidth=1,
                      color=colours[label % len(colours)], alpha=0.8)
        for label, cls in enumerate(dataset.classes):
            axis.plot([], [], color=colours[label % len(colours)], label=cls)
        axis.set(title=f"A0S {name}: mean |acceleration|^2 = {acceleration[name]:.2f}",
                 xlabel="PC 1", ylabel="PC 2")
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return acceleration


def _write_report(out: Path, settings: DemoSettings, scores, compared, parity, latency, flops,
                  smoothness, curves, seconds: float) -> Path:
    lines = [
        "# grw-edge demo report", "",
        f"Synthetic yaw/pitch/roll airplane videos, MoViNet-A0S at {settings.resolution} px, "
        f"clips of {settings.clip_frames} frames at {settings.fps:g} fps, {settings.steps} "
        f"training steps of {settings.batch_size} clips on the CPU. Wall time {seconds:.0f} s.",
        "", "## Accuracy on the test split", "",
        "| model | top-1 | top-5 | loss | mean squared acceleration of embeddings |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, score in scores.items():
        lines.append(f"| A0S {name} | {score.top1:.1%} | {score.top5:.1%} | {score.loss:.3f} | "
                     f"{smoothness[name]:.3f} |")
    agreement = compared.agreement
    lines += [
        "", f"{compared.clips} test clips. The exported ONNX model (streamed frame by frame) "
        f"against PyTorch on the same clips: top-1 {compared.scores['onnxruntime'].top1:.1%} "
        f"vs {compared.scores['pytorch'].top1:.1%}, agreement "
        f"{agreement['top1_agreement']:.1%}, max |d logits| {agreement['max_abs_logits']:.2e}.",
        "", "## Export parity (`grw-edge verify`, random clips)", "",
        f"max |d embeddings| {parity['max_abs_embeddings']:.2e}, max |d logits| "
        f"{parity['max_abs_logits']:.2e}, top-1 agreement {parity['top1_agreement']:.0%} "
        f"({parity['clips']} clips of {parity['frames']} frames, {parity['backend']}).",
        "", "## Cost", "",
        "| runtime (1 thread) | per-frame step, median | p90 |", "| --- | --- | --- |",
    ]
    for name, timing in latency.items():
        lines.append(f"| {name} | {timing['median_ms']:.2f} ms | {timing['p90_ms']:.2f} ms |")
    lines += [
        "", f"fvcore: backbone {flops['backbone_gflops']:.3f} GFLOPs and head "
        f"{flops['head_gflops']:.4f} GFLOPs per {flops['frames']}-frame clip at "
        f"{flops['resolution']} px; {flops['parameters']:,} parameters.",
        "", "## Plots", "", "![training curves](training_curves.png)", "",
        "![embedding trajectories](trajectories.png)", "",
        "## Settings", "", "```json", json.dumps(asdict(settings), indent=2), "```", "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
