"""The ``grw-edge`` command line.

User errors (``GrwEdgeError``) print one line and exit with status 1; no traceback.
"""
from __future__ import annotations

import functools
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from grw_edge._tables import format_table
from grw_edge.data.failures import DEFAULT_MAX_FAILED, ClipFailures
from grw_edge.data.video import SAMPLING
from grw_edge.errors import GrwEdgeError
from grw_edge.targets import TARGETS


class _Group(click.Group):
    """A click group that turns grw-edge's user errors into one-line messages."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GrwEdgeError as error:
            raise click.ClickException(str(error)) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="grw-edge")
def cli() -> None:
    """GRW-smoothed MoViNet video recognition: train, export, verify, evaluate, benchmark."""


def _max_failed_option(function):
    """--max-failed-clips: the fraction of clips that may fail to decode before a run stops."""
    return click.option("--max-failed-clips", type=click.FloatRange(0, 1),
                        default=DEFAULT_MAX_FAILED, show_default=True,
                        help="Fraction of the clips that may fail to decode (each is skipped "
                             "and named) before the run stops.")(function)


def _sampling_option(function):
    """--sampling: which frames a clip takes at --fps, by index (upstream) or by time."""
    return click.option("--sampling", type=click.Choice(SAMPLING), default="index",
                        show_default=True,
                        help="Choose frames at --fps by index from the average frame rate "
                             "(upstream's rule, for faithful evaluation), or by presentation "
                             "time (the frame on screen at each tick: variable frame rate).")(
                                 function)


def _weights_options(function):
    """--backbone/--checkpoint/--hub/--random-init/--ema, shared by commands that load a model."""
    options = [
        click.option("--backbone", default=None, help="Registered backbone; given alone, "
                     "its published weights (as --hub)."),
        click.option("--checkpoint", type=click.Path(), default=None, help="Checkpoint file."),
        click.option("--hub", is_flag=True, help="The published weights, through the Hugging "
                     "Face cache [the default with --backbone]."),
        click.option("--random-init", is_flag=True, help="Seeded random weights with every "
                     "branch live (states matter), to try the toolchain without a checkpoint."),
        click.option("--seed", "init_seed", type=int, default=0, show_default=True,
                     help="Seed of the --random-init weights."),
        click.option("--ema/--no-ema", default=False, show_default=True,
                     help="Use the EMA weights."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@cli.command("backbones")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def backbones_command(as_json: bool) -> None:
    """List the registered backbones and their evaluation settings."""
    from grw_edge.registry import get_backbone, list_backbones

    rows = []
    for name in list_backbones():
        spec = get_backbone(name)
        rows.append({
            "backbone": name, "mode": "streaming" if spec.causal else "clip",
            "resize": spec.resize, "resolution": spec.resolution,
            "frames_per_clip": spec.frames_per_clip, "fps": spec.fps,
            "blocks": sum(len(stage) for stage in spec.arch.stages),
            "feature_channels": spec.arch.head_channels, "hub_file": spec.hub_filename,
        })
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(format_table(rows))


@cli.command("download")
@click.argument("backbone")
@click.option("--revision", default=None, help="Hub revision (branch, tag or commit).")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Cache directory (default: the standard Hugging Face cache).")
def download_command(backbone: str, revision: str | None, cache_dir: str | None) -> None:
    """Download the published checkpoint of BACKBONE and print its local path."""
    from grw_edge.checkpoints import download_checkpoint

    click.echo(str(download_checkpoint(backbone, revision=revision, cache_dir=cache_dir)))


@cli.command("info")
@click.argument("checkpoint")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info_command(checkpoint: str, as_json: bool) -> None:
    """Describe CHECKPOINT (a file, or a backbone name to use the published one)."""
    from grw_edge.checkpoints import describe_checkpoint

    info = describe_checkpoint(checkpoint)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    width = max(len(key) for key in info)
    for key, value in info.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        click.echo(f"{key:<{width}}  {value}")


@cli.command("export")
@_weights_options
@click.option("--target", type=click.Choice(list(TARGETS)), default="onnx", show_default=True,
              help="onnx: any ONNX runtime; tensorrt: TensorRT-ready ONNX plus engines when a "
              "GPU is here; litert: .tflite files for LiteRT (Android, LiteRT.js, XNNPACK); "
              "coreml: .mlpackage files.")
@click.option("--out", type=click.Path(file_okay=False), help="Artifact directory "
              "[default: <backbone>-<target>].")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Streams (rows) a step takes: the slots of a multi-stream session.")
@click.option("--dynamic-batch", is_flag=True, help="onnx, tensorrt: the graphs take any batch "
              "from 1 to --batch, so a multi-stream session runs only the slots in use "
              "(TensorRT: an optimisation profile over the batch).")
@click.option("--frames-per-step", type=click.IntRange(min=1), default=1, show_default=True,
              help="Frames each streaming step takes.")
@click.option("--resolution", type=click.IntRange(min=32), default=None,
              help="Input side in pixels [default: the backbone's evaluation resolution].")
@click.option("--opset", type=click.IntRange(min=17), default=18, show_default=True)
@click.option("--fused", is_flag=True, help="Also write fused.onnx: step + head, logits "
              "every step, the embedding window as a state.")
@click.option("--mobile", is_flag=True, help="Also write ONNX Runtime mobile (.ort) files "
              "and required_operators.config for a reduced build.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32",
              show_default=True, help="fp16: float16 compute, float32 I/O (litert: float16 "
              "weights); int8: static quantization of the step.")
@click.option("--fp16-io", is_flag=True, help="fp16: frames, states, embeddings and logits "
              "float16 at the graph boundary too [default: float32 there].")
@click.option("--calibration-data", type=click.Path(file_okay=False), default=None,
              help="int8: calibrate on the first clip of each video under this folder "
              "[default: random frames].")
@click.option("--calibration-clips", type=click.IntRange(min=1), default=16, show_default=True,
              help="int8: clips to calibrate on.")
@click.option("--allow-degraded", is_flag=True, help="Write the artifact even if it misses "
              "the agreement bar for its precision (the shortfall goes in the manifest).")
@click.option("--no-reference", is_flag=True, help="Leave the PyTorch reference weights out "
              "(verify then needs --checkpoint, unless they are the published ones).")
@click.option("--parity-clips", type=click.IntRange(min=1), default=None,
              help="Clips the export-time parity check runs [default: 1 for fp32, 16 "
              "otherwise].")
@click.option("--parity-frames", type=click.IntRange(min=1), default=None,
              help="Frames per parity clip [default: frames per clip].")
@click.option("--parity-videos", type=click.Path(file_okay=False), default=None,
              help="Check parity on the first clip of each video under this folder instead "
              "of random clips.")
@click.option("--workspace-gib", type=click.FloatRange(min=0, min_open=True), default=2.0,
              show_default=True, help="tensorrt: builder workspace memory.")
@click.option("--minimum-deployment-target", default="iOS16", show_default=True,
              help="coreml: oldest OS the packages run on (iOS16..iOS18, macOS13..macOS15).")
@click.option("--stateful", is_flag=True, help="coreml: keep the states inside the model as "
              "Core ML state tensors (needs iOS18/macOS15).")
@click.option("--overwrite", is_flag=True, help="Replace an existing artifact directory.")
def export_command(backbone: str | None, checkpoint: str | None, hub: bool, random_init: bool,
                   init_seed: int, ema: bool, target: str, out: str | None, no_reference: bool,
                   **options) -> None:
    """Export a model as an artifact directory: graphs, manifest.json, labels.txt."""
    from grw_edge.exporters import export, target_options
    from grw_edge.manifest import read_manifest

    context = click.get_current_context()
    accepted = target_options(target)
    for name in options:
        given = context.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
        if given and name not in accepted:
            raise click.ClickException(f"--{name.replace('_', '-')} does not apply to "
                                       f"--target {target}")
    model = _model_from_options(backbone, checkpoint, hub, random_init, ema, init_seed)
    out = out or f"{model.backbone_spec.name}-{target}"
    path = export(model, target, out, include_reference=not no_reference,
                  **{name: value for name, value in options.items() if name in accepted})
    manifest = read_manifest(path)
    parity = manifest.parity
    click.echo(_weights_line(model))
    click.echo(f"wrote {path}: {', '.join(sorted(p.name for p in path.iterdir()))}")
    if parity.get("measured") is False:
        click.echo(f"parity not measured: {parity['reason']}")
        return
    click.echo(f"parity vs PyTorch ({manifest.precision}, {parity['backend']}, "
               f"{parity['clips']} clip(s) x {parity['frames']} frames): max |d embeddings| "
               f"{parity['max_abs_embeddings']:.2e}, max |d logits| "
               f"{parity['max_abs_logits']:.2e}, top-1 agreement {parity['top1_agreement']:.1%}")
    if parity.get("long_stream"):
        long = parity["long_stream"]
        click.echo(f"after 10^5..10^7 frames: max |d embeddings| "
                   f"{long['max_abs_embeddings']:.2e}, max |d logits| "
                   f"{long['max_abs_logits']:.2e}, top-1 agreement {long['top1_agreement']:.1%}")
    for problem in parity.get("problems", []):
        click.echo(f"warning: below the {manifest.precision} bar (--allow-degraded): {problem}")
    if target == "onnx" and (manifest.precision_details or {}).get("note"):
        click.echo(f"note: {manifest.precision_details['note']}")
    if manifest.engine and not manifest.engine.get("built"):
        click.echo(manifest.engine["message"])


@cli.command("build-engine")
@click.argument("artifact", type=click.Path())
@click.option("--workspace-gib", type=click.FloatRange(min=0, min_open=True), default=2.0,
              show_default=True, help="Builder workspace memory.")
def build_engine_command(artifact: str, workspace_gib: float) -> None:
    """Build the TensorRT engines of ARTIFACT on this machine's GPU (engines are device-specific)."""
    from grw_edge.exporters.tensorrt import build_engine_in_artifact

    engine = build_engine_in_artifact(artifact, workspace_gib=workspace_gib).engine
    click.echo(f"built {engine['step']} and {engine['head']} in {artifact} with TensorRT "
               f"{engine['tensorrt']} on {engine['device']}")


@cli.command("verify")
@click.argument("artifact", type=click.Path())
@click.option("--backend", default=None, help="Runtime backend [default: the artifact's].")
@click.option("--checkpoint", type=click.Path(), default=None,
              help="Reference checkpoint, or a backbone name for its published one [default: "
              "the artifact's reference weights, else the published ones it came from].")
@click.option("--clips", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--frames", type=click.IntRange(min=1), default=None,
              help="Frames per clip [default: the artifact's frames per clip].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Intra-op threads.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None,
              help="Where the torch or onnxruntime session runs [default: the backend's]; "
              "torch on cuda replays CUDA graphs.")
@click.option("--videos", type=click.Path(file_okay=False), default=None,
              help="Use the first clip of every video under this folder instead of random clips.")
@click.option("--long-stream/--no-long-stream", default=True, show_default=True,
              help="Also compare from states as they are after 10^5, 10^6 and 10^7 frames.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify_command(artifact: str, backend: str | None, checkpoint: str | None, clips: int,
                   frames: int | None, seed: int, threads: int | None, device: str | None,
                   videos: str | None, long_stream: bool, as_json: bool) -> None:
    """Check that ARTIFACT, streamed frame by frame, agrees with the PyTorch reference."""
    from grw_edge.verify import verify_artifact

    report = verify_artifact(artifact, backend=backend, checkpoint=checkpoint, clips=clips,
                             frames=frames, seed=seed, threads=threads, videos=videos,
                             device=device, long_stream=long_stream)
    problems = report.failures()
    if as_json:
        click.echo(json.dumps({**report.to_dict(), "passed": not problems,
                               "problems": problems}, indent=2))
    else:
        click.echo(format_table([{
            "backend": report.backend, "precision": report.precision, "clips": report.clips,
            "frames": report.frames,
            "max|d emb|": f"{report.max_abs_embeddings:.2e}",
            "max|d logits|": f"{report.max_abs_logits:.2e}",
            "top-1 agree": f"{report.top1_agreement:.1%}",
            "self-test": ("-" if report.self_test is None else
                          "PASS" if report.self_test["passed"] else "FAIL"),
            "result": "FAIL" if problems else "PASS"}]))
        if report.long_stream:
            ls = report.long_stream
            click.echo(f"after 10^5..10^7 frames ({ls['clips']} clip(s) x {ls['steps']} more "
                       f"frames): max |d emb| {ls['max_abs_embeddings']:.2e}, max |d logits| "
                       f"{ls['max_abs_logits']:.2e}, top-1 agreement "
                       f"{ls['top1_agreement']:.1%}")
        for path in report.skipped:
            click.echo(f"skipped unreadable video: {path}")
    if problems:
        raise click.ClickException("; ".join(problems))


@cli.command("eval")
@click.option("--data", "data_root", type=click.Path(), required=True,
              help="Dataset root holding <split>/<class>/<video>.")
@click.option("--split", default="test", show_default=True)
@_weights_options
@click.option("--artifact", type=click.Path(), default=None, help="Evaluate an exported "
              "artifact (streamed frame by frame) instead of a checkpoint.")
@click.option("--compare", is_flag=True, help="With --artifact: also run the PyTorch reference "
              "on the same clips and report the agreement.")
@click.option("--frames", type=click.IntRange(min=1), default=None, help="Frames per clip "
              "[default: the backbone's or artifact's].")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Sampling rate [default: the backbone's or artifact's].")
@click.option("--resolution", type=click.IntRange(min=32), default=None,
              help="Crop side for checkpoints [default: the backbone's].")
@click.option("--max-clips", type=click.IntRange(min=1), default=None,
              help="Evaluate this many clips, spread over the set.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="DataLoader worker processes.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Intra-op threads.")
@click.option("--long-stream", is_flag=True, help="Play the split's videos as one continuous "
              "stream, frame by frame, and score each stream policy (see --policies).")
@click.option("--policies", default=None, help="--long-stream: comma-separated stream policies, "
              "cumulative and reset-every-N [default: cumulative,reset-every-<2 x frames>].")
@click.option("--repeat", type=click.IntRange(min=1), default=1, show_default=True,
              help="--long-stream: play the shuffled split this many times in a row.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--report-file", type=click.Path(dir_okay=False), default=None,
              help="Also write the JSON report (scores and every file's fate) here.")
@_max_failed_option
@_sampling_option
def eval_command(data_root: str, split: str, backbone: str | None, checkpoint: str | None,
                 hub: bool, random_init: bool, init_seed: int, ema: bool, artifact: str | None,
                 compare: bool, frames: int | None, fps: float | None, resolution: int | None,
                 max_clips: int | None, batch_size: int, workers: int, threads: int | None,
                 long_stream: bool, policies: str | None, repeat: int, as_json: bool,
                 report_file: str | None, max_failed_clips: float, sampling: str) -> None:
    """Top-1/top-5 accuracy and loss on a video folder (runs under torchrun too)."""
    from grw_edge.data.kinetics import VideoClipDataset
    from grw_edge.distributed import local_device
    from grw_edge.evaluate import evaluate, reference_predictor, session_predictor
    from grw_edge.labels import class_names, read_labels
    from grw_edge.preprocess import ClipProtocol

    predictors, weights = {}, None
    if artifact:
        from grw_edge import runtimes
        from grw_edge.verify import reference_model

        session = runtimes.open(artifact, threads=threads)
        protocol = ClipProtocol.for_manifest(session.manifest)
        classes = read_labels(session.artifact / session.manifest.labels)
        if compare:
            predictors["pytorch"] = reference_predictor(reference_model(artifact, checkpoint),
                                                        local_device())
        predictors[session.backend] = session_predictor(session)
    else:
        if compare:
            raise click.ClickException("--compare needs --artifact")
        model = _model_from_options(backbone, checkpoint, hub, random_init, ema, init_seed)
        weights = _weights_line(model)
        protocol = ClipProtocol.for_backbone(model.backbone_spec, resolution)
        classes = class_names(model.head_config.num_classes)
        predictors["pytorch"] = reference_predictor(model, local_device())
    if threads:
        import torch

        torch.set_num_threads(threads)
    protocol = protocol.override(frames, fps, sampling)
    if long_stream:
        if artifact:
            open_session = functools.partial(runtimes.open, artifact, threads=threads)
        else:
            from grw_edge.runtimes.torch import TorchSession

            open_session = functools.partial(TorchSession.for_model, model,
                                             resolution=protocol.crop)
        _long_stream_eval(data_root, split, protocol, open_session, classes, policies, repeat,
                          init_seed, as_json, report_file)
        return
    dataset = VideoClipDataset(data_root, split, frames_per_clip=protocol.frames, fps=protocol.fps,
                               resize=protocol.resize, crop=protocol.crop,
                               sampling=protocol.sampling)
    report = evaluate(dataset, predictors, classes, batch_size=batch_size, workers=workers,
                      max_clips=max_clips)
    if report is None:  # not rank 0 of a distributed run
        return
    if weights:
        click.echo(weights, err=as_json)
    if report.agreement:
        _judge_against_reference(report, session.manifest.precision)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _print_eval_report(report, protocol, f"{data_root}/{split}")
    if report_file:
        _write_report(report_file, report.to_dict())
    failures = ClipFailures(report.selected, max_failed_clips)
    failures.add(report.failed_clips)
    failures.check(f"{data_root}/{split}")
    if report.agreement.get("problems"):
        raise click.ClickException("; ".join(report.agreement["problems"]))


def _write_report(path: str, report: dict) -> None:
    """``--report-file``: the report as JSON, written whole or not at all."""
    from grw_edge._io import atomic_write_path

    try:
        with atomic_write_path(path) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
    except OSError as error:
        raise click.ClickException(f"cannot write the report to {path}: "
                                   f"{error.strerror or error}") from None


def _long_stream_eval(data_root: str, split: str, protocol, open_session, classes,
                      policies: str | None, repeat: int, seed: int, as_json: bool,
                      report_file: str | None) -> None:
    """``eval --long-stream``: the split as one stream through each policy."""
    from grw_edge.long_stream import evaluate_long_stream, open_policies, stream_of_videos

    names = (policies or f"cumulative,reset-every-{2 * protocol.frames}").split(",")

    def windowed():
        session = open_session()
        session.set_window(protocol.frames)
        return session

    try:
        chosen = open_policies(names, windowed)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    stream, dataset_classes, unreadable = stream_of_videos(data_root, split, protocol,
                                                           repeat=repeat, seed=seed)
    report = evaluate_long_stream(stream, chosen, dataset_classes, classes, protocol.frames)
    report.unreadable = unreadable
    if report_file:
        _write_report(report_file, report.to_dict())
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    click.echo(f"{report.videos} videos as one stream of {report.frames} frames at "
               f"{protocol.fps:g} fps ({protocol.crop}px); accuracy {report.window} frames "
               f"after each boundary, per quarter of the stream, and of every frame")
    click.echo(format_table([{
        "policy": s.policy, f"acc @{report.window}": f"{s.after_boundary:.1%}",
        "by quarter": " ".join(f"{a:.0%}" for a in s.by_segment),
        "every frame": f"{s.every_frame:.1%}", "steps/frame": s.steps_per_frame,
        "ms/frame": f"{s.ms_per_frame:.2f}"} for s in report.scores]))
    for failure in unreadable:
        click.echo(f"  unreadable: {failure['path']}: {failure['reason']}")


def _judge_against_reference(report, precision: str) -> None:
    """Add the accuracy change and DESIGN.md's verdict for the artifact's precision."""
    from grw_edge.verify import precision_failures

    reference, exported = (report.scores[name].top1 for name in report.scores)
    drop = 100 * (reference - exported)
    problems = precision_failures(
        precision, top1_agreement=report.agreement["top1_agreement"],
        max_abs_logits=report.agreement["max_abs_logits"],
        top1_drop_points=drop if precision == "int8" else None)
    report.agreement.update(precision=precision, top1_drop_points=drop, passed=not problems,
                            problems=problems)


def _print_eval_report(report, protocol, source: str) -> None:
    click.echo(f"{report.clips} clips of {protocol.frames} frames at {protocol.fps:g} fps "
               f"({protocol.crop}px) from {source}: {report.clips_per_second:.2f} clips/s")
    click.echo(format_table([{"model": name, "top-1": f"{s.top1:.2%}", "top-5": f"{s.top5:.2%}",
                        "loss": f"{s.loss:.4f}"} for name, s in report.scores.items()]))
    if report.agreement:
        verdict = "PASS" if report.agreement["passed"] else "FAIL"
        click.echo(f"top-1 agreement {report.agreement['top1_agreement']:.2%}, max |d logits| "
                   f"{report.agreement['max_abs_logits']:.2e}, top-1 change "
                   f"{-report.agreement['top1_drop_points']:+.2f} points "
                   f"({report.agreement['precision']}: {verdict})")
    failed_files = sorted({f["path"] for f in report.failed_clips})
    click.echo(f"files: {len(report.used)} used, {len(report.too_short)} shorter than one clip, "
               f"{len(report.unreadable)} unreadable, {len(failed_files)} with "
               f"{len(report.failed_clips)} clip(s) that failed to decode, "
               f"{len(report.unsupported)} not a video suffix"
               + (f", {len(report.not_selected)} with no clip chosen" if report.not_selected
                  else ""))
    for path in report.too_short:
        click.echo(f"  too short: {path}")
    for failure in report.unreadable:
        click.echo(f"  unreadable: {failure['path']}: {failure['reason']}")
    for failure in report.failed_clips:
        click.echo(f"  clip {failure['clip']} failed: {failure['path']}: {failure['reason']}")
    for path in report.unsupported:
        click.echo(f"  not a video suffix: {path}")


@cli.command("predict")
@click.argument("videos", nargs=-1, required=True, type=click.Path())
@_weights_options
@click.option("--artifact", type=click.Path(), default=None, help="Use an exported artifact.")
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--stream", is_flag=True, help="Print the running prediction frame by frame; "
              "several videos stream at once, as cameras, one batched step per frame for as "
              "many as the artifact's --batch (the PyTorch model: --slots).")
@click.option("--slots", type=click.IntRange(min=1), default=None,
              help="--stream with the PyTorch model: videos streamed at once [default: all].")
@click.option("--frames", type=click.IntRange(min=1), default=None, help="Frames to use.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--resolution", type=click.IntRange(min=32), default=None)
@_sampling_option
def predict_command(videos: tuple[str, ...], backbone: str | None, checkpoint: str | None,
                    hub: bool, random_init: bool, init_seed: int, ema: bool,
                    artifact: str | None, top: int, stream: bool, slots: int | None,
                    frames: int | None, fps: float | None, resolution: int | None,
                    sampling: str) -> None:
    """Top labels of each video's first clip, or (--stream) the running prediction per frame."""
    from grw_edge.evaluate import reference_predictor, session_predictor
    from grw_edge.labels import class_names, read_labels
    from grw_edge.predict import predict_video
    from grw_edge.preprocess import ClipProtocol
    from grw_edge.runtimes.torch import TorchSession

    if slots and (artifact or not stream):
        raise click.ClickException("--slots is for --stream with the PyTorch model (an "
                                   "artifact streams as many videos at once as its --batch)")
    header = []  # said before the first result, so that a user error stays one line
    if artifact:
        from grw_edge import runtimes

        session = runtimes.open(artifact)
        protocol = ClipProtocol.for_manifest(session.manifest)
        classes = read_labels(session.artifact / session.manifest.labels)
    else:
        model = _model_from_options(backbone, checkpoint, hub, random_init, ema, init_seed)
        protocol = ClipProtocol.for_backbone(model.backbone_spec, resolution)
        classes = class_names(model.head_config.num_classes)
        header.append(_weights_line(model))
        session = TorchSession.for_model(model, resolution=protocol.crop,
                                         batch=(slots or len(videos)) if stream else 1)
    protocol = protocol.override(frames, fps, sampling)

    def echo(line: str) -> None:
        while header:
            click.echo(header.pop(0))
        click.echo(line)

    if stream:
        _stream_videos(session, videos, protocol, classes, echo)
        return
    predict = session_predictor(session) if artifact else reference_predictor(model)
    failed: list[str] = []
    for video in videos:
        try:
            prediction = predict_video(predict, video, protocol, classes, top)
        except GrwEdgeError as error:
            _video_failed(video, error, videos, failed)
            continue
        lost = (f" ({len(prediction.lost)} lost: the frames at "
                f"{', '.join(f'{t:.2f}s' for t in prediction.lost)} did not decode)"
                if prediction.lost else "")
        echo(f"{video}: {prediction.frames} frames at {protocol.fps:g} fps{lost}")
        for label, probability in zip(prediction.labels, prediction.probabilities):
            echo(f"  {probability:6.3f}  {label}")
    _all_videos_done(failed, videos, "classified")


def _video_failed(video: str, error: GrwEdgeError, videos: tuple[str, ...],
                  failed: list[str]) -> None:
    """One video of several failed: name it and go on (one video: its error is the
    command's)."""
    if len(videos) == 1:
        raise error
    failed.append(video)
    click.echo(f"{video}: {error}", err=True)


def _all_videos_done(failed: list[str], videos: tuple[str, ...], done: str) -> None:
    """Exit 1 after the others when some videos failed."""
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(videos)} video(s) could not be "
                                   f"{done} (named above)")


def _stream_videos(session, videos: tuple[str, ...], protocol, classes: list[str],
                   echo: Callable[[str], None]) -> None:
    """``predict --stream``: each video's running prediction per frame, lines prefixed with
    the video when there are several."""
    from grw_edge.predict import stream_videos
    from grw_edge_runtime import MultiStreamSession

    if not session.streaming:
        raise click.ClickException(f"{session.manifest.backbone} is a whole-clip backbone; "
                                   f"it cannot stream (drop --stream)")
    failed: list[str] = []
    for video, prediction in stream_videos(MultiStreamSession(session), videos, protocol,
                                           classes):
        if isinstance(prediction, GrwEdgeError):
            _video_failed(video, prediction, videos, failed)
            continue
        name = f"{video}  " if len(videos) > 1 else ""
        for seconds in (t for t in prediction.lost if t < prediction.seconds):
            echo(f"{name}{seconds:7.2f}s  lost: the frame did not decode (skipped)")
        echo(f"{name}{prediction.seconds:7.2f}s  frame {prediction.frames:>4}  "
             f"{prediction.labels[0]}  {prediction.probabilities[0]:.3f}")
        for seconds in (t for t in prediction.lost if t > prediction.seconds):
            echo(f"{name}{seconds:7.2f}s  lost: the frame did not decode (skipped)")
    _all_videos_done(failed, videos, "streamed")


@cli.command("train")
@click.option("--backbone", required=True, help="Registered backbone.")
@click.option("--data", required=True, type=click.Path(), help="Root of <split>/<class>/<video>.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option("--split", default="train", show_default=True)
@click.option("--init", type=click.Path(), default=None,
              help="Start from this checkpoint (a backbone name: the published one).")
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly where it stopped.")
@click.option("--frames", type=click.IntRange(min=3), default=16, show_default=True,
              help="Frames per clip (a multiple of T).")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=5.0,
              show_default=True)
@click.option("--resolution", type=click.IntRange(min=32), default=None,
              help="Crop side [default: the backbone's].")
@click.option("--T", "T", type=click.IntRange(min=3), default=4, show_default=True,
              help="GRW sub-sequence length.")
@click.option("--grw-weight", type=click.FloatRange(min=0), default=0.01, show_default=True,
              help="lambda in CE + lambda * GRW; 0 trains without GRW.")
@click.option("--grw-alpha", type=click.FloatRange(min=0), default=0.5, show_default=True)
@click.option("--intermediate-weight", type=click.FloatRange(min=0), default=0.0,
              show_default=True, help="Weight of intermediate-layer smoothing (0 = off).")
@click.option("--embed-dim", type=click.IntRange(min=8), default=256, show_default=True)
@click.option("--head-depth", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3,
              show_default=True)
@click.option("--weight-decay", type=click.FloatRange(min=0), default=0.05, show_default=True)
@click.option("--warmup-steps", type=click.IntRange(min=0), default=50, show_default=True)
@click.option("--grad-clip", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True)
@click.option("--ema-decay", type=click.FloatRange(0, 1), default=0.999, show_default=True)
@click.option("--dropout", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--drop-path", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Stochastic depth of the backbone blocks (max rate).")
@click.option("--freeze-bn", is_flag=True, help="Keep batch-norm statistics fixed (for "
              "fine-tuning with small batches); otherwise synced across GPUs under torchrun.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
              default="auto", show_default=True, help="Mixed precision on CUDA (CPU: fp32).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--log-every", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@_max_failed_option
@_sampling_option
def train_command(backbone: str, data: str, out: str, split: str, init: str | None,
                  resume: bool, frames: int, fps: float, resolution: int | None, T: int,
                  grw_weight: float, grw_alpha: float, intermediate_weight: float,
                  embed_dim: int, head_depth: int, steps: int, batch_size: int, lr: float,
                  weight_decay: float, warmup_steps: int, grad_clip: float, ema_decay: float,
                  dropout: float, drop_path: float, freeze_bn: bool, precision: str,
                  checkpoint_every: int,
                  log_every: int, workers: int, seed: int, max_failed_clips: float,
                  sampling: str) -> None:
    """Train with cross-entropy + lambda * GRW (torchrun for several GPUs or processes)."""
    from grw_edge.registry import get_backbone
    from grw_edge.training import TrainConfig, train

    get_backbone(backbone)
    if init and not Path(init).exists():
        from grw_edge.checkpoints import resolve_checkpoint

        init = str(resolve_checkpoint(init))
    cfg = TrainConfig(backbone=backbone, data=data, out=out, split=split, init=init,
                      frames=frames, fps=fps, sampling=sampling, resolution=resolution, T=T,
                      grw_weight=grw_weight,
                      grw_alpha=grw_alpha, intermediate_weight=intermediate_weight,
                      embed_dim=embed_dim, head_depth=head_depth, steps=steps,
                      batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                      warmup_steps=warmup_steps, grad_clip=grad_clip, ema_decay=ema_decay,
                      dropout=dropout, drop_path=drop_path, freeze_bn=freeze_bn,
                      precision=precision,
                      checkpoint_every=checkpoint_every, log_every=log_every, workers=workers,
                      seed=seed, max_failed_clips=max_failed_clips)
    path = train(cfg, resume=resume)
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(f"wrote {path}")


@cli.command("bench")
@click.option("--backbones", default="movineta0s,movineta1s,movineta2s,movineta3b",
              show_default=True, help="Comma-separated backbones.")
@click.option("--backends", default=None, help="Comma-separated backends; unavailable ones "
              "are reported as skipped [default: torch,onnxruntime,tensorrt,coreml; with "
              "--device cuda: torch,torch-cudagraphs,onnxruntime,tensorrt].")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Where the torch and onnxruntime sessions run.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--repeats", type=click.IntRange(min=5), default=100, show_default=True,
              help="Timed runs per measurement (after warm-up).")
@click.option("--resolution", type=click.IntRange(min=32), default=None,
              help="Input side [default: each backbone's evaluation resolution].")
@click.option("--frames", type=click.IntRange(min=1), default=None,
              help="Frames per video for FLOPs [default: each backbone's].")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Write the results as JSON here.")
@click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False), default=None,
              help="Write the tables as Markdown here.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False), default=None,
              help="Write accuracy_vs_gflops.png and latency.png here.")
@click.option("--compare-tflite", "tflite", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Also time this TF Lite streaming model (states as inputs and outputs) "
                   "with LiteRT in the same loop; repeatable. Needs grw-edge[litert].")
@click.option("--precision", "precisions", default="fp32", show_default=True,
              help="Comma-separated precisions (fp32, fp16, bf16) of the torch rows (eager, "
                   "session, graph replay) and of --streams; the other backends run float32.")
@click.option("--streams", "slots", default=None, help="Instead of latency: how many "
              "camera streams one MultiStreamSession serves at 5 and 30 fps, from a tick of "
              "each of these comma-separated live-stream counts, e.g. 1,8,64 (--backends "
              "torch [default], onnxruntime, tensorrt: the latter two on a --dynamic-batch "
              "artifact with as many slots as the largest count).")
def bench_command(backbones: str, backends: str | None, device: str, threads: int,
                  repeats: int, resolution: int | None, frames: int | None,
                  json_path: str | None, markdown_path: str | None, plot_dir: str | None,
                  tflite: tuple[Path, ...], precisions: str, slots: str | None) -> None:
    """FLOPs (fvcore), per-frame latency and memory, per backbone and backend (or, with
    --streams, the streams one session serves)."""
    from grw_edge._io import atomic_write_path
    from grw_edge.registry import get_backbone
    from grw_edge.runtimes.torch import resolve_precision

    names = [get_backbone(name).name for name in backbones.split(",") if name.strip()]
    chosen_precisions = tuple(p.strip() for p in precisions.split(",") if p.strip())
    for precision in chosen_precisions:
        resolve_precision(precision)  # an unknown one is refused before any work
    if slots:
        from grw_edge.benchmarks import streams

        chosen = tuple(name.strip() for name in (backends or "torch").split(",")
                       if name.strip())
        unknown = sorted(set(chosen) - set(streams.BACKENDS))
        if unknown:
            raise click.ClickException(f"--streams runs on {', '.join(streams.BACKENDS)}; "
                                       f"not {', '.join(unknown)}")
        rows = streams.run_streams(names, _positive_ints(slots, "--streams"), device=device,
                                   resolution=resolution, repeats=repeats,
                                   precisions=chosen_precisions, backends=chosen)
        results, text = {"streams": rows}, streams.report_text(rows, device=device)
        markdown = streams.report_text(rows, device=device, markdown=True)
    else:  # FLOPs and latency (fvcore is imported only here)
        from grw_edge.benchmarks.bench import CUDA_BACKENDS, report_text, run_bench

        backends = backends or (",".join(CUDA_BACKENDS) if device == "cuda"
                                else "torch,onnxruntime,tensorrt,coreml")
        chosen = [name.strip() for name in backends.split(",") if name.strip()]
        results = run_bench(names, chosen, threads=threads, repeats=repeats,
                            resolution=resolution, frames=frames, device=device,
                            precisions=chosen_precisions, tflite=list(tflite))
        text, markdown = report_text(results), report_text(results, markdown=True)
    click.echo(text)
    for path, text in ((json_path, json.dumps(results, indent=2) + "\n"),
                       (markdown_path, markdown + "\n")):
        if path:
            with atomic_write_path(path) as tmp:
                tmp.write_text(text)
    if plot_dir and not slots:
        from grw_edge.benchmarks.bench import write_plots

        for path in write_plots(results, Path(plot_dir)):
            click.echo(f"wrote {path}")


@cli.command("demo")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--steps", type=click.IntRange(min=1), default=300, show_default=True,
              help="Training steps per model.")
@click.option("--videos-per-class", type=click.IntRange(min=2), default=16, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def demo_command(out: str, steps: int, videos_per_class: int, seed: int) -> None:
    """Offline end to end: synthetic videos, train A0S with and without GRW, export, verify,
    evaluate, benchmark, and write OUT/report.md with plots."""
    from grw_edge.demo import DemoSettings, run_demo

    run_demo(out, DemoSettings(steps=steps, videos_per_class=videos_per_class, seed=seed),
             echo=click.echo)


@cli.command("make-synthetic")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--videos-per-class", type=click.IntRange(min=1), default=8, show_default=True,
              help="Training videos per class.")
@click.option("--test-videos-per-class", type=click.IntRange(min=1), default=None,
              help="Test videos per class [default: a quarter of the training count, >= 2].")
@click.option("--frames", type=click.IntRange(min=2), default=40, show_default=True)
@click.option("--size", type=click.IntRange(min=16), default=96, show_default=True)
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=10.0,
              show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def make_synthetic_command(out: str, videos_per_class: int, test_videos_per_class: int | None,
                           frames: int, size: int, fps: float, seed: int) -> None:
    """Render the yaw/pitch/roll airplane set (train and test) as mp4 files under OUT."""
    from grw_edge.data.synthetic import make_synthetic_dataset

    summary = make_synthetic_dataset(out, videos_per_class=videos_per_class,
                                     test_videos_per_class=test_videos_per_class, frames=frames,
                                     size=size, fps=fps, seed=seed)
    click.echo(f"wrote {summary['splits']} videos of {frames} frames ({size}px, {fps:g} fps) "
               f"for classes {', '.join(summary['classes'])} to {out}")


@cli.command("serve")
@click.argument("artifact", type=click.Path())
@click.option("--port", type=click.IntRange(min=0, max=65535), default=8000, show_default=True,
              help="TCP port (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--log/--no-log", default=False, help="Print every request.")
def serve_command(artifact: str, port: int, host: str, log: bool) -> None:
    """Serve the live demo page (camera or video file -> top-5) for ARTIFACT, with the
    JS runtime and onnxruntime-web, on localhost; prints the URL."""
    from grw_edge.serve import serve

    serve(artifact, host=host, port=port, quiet=not log, echo=click.echo)


def _model_from_options(backbone: str | None, checkpoint: str | None, hub: bool,
                        random_init: bool, ema: bool, seed: int = 0):
    """The model a command was asked for: a checkpoint, seeded random weights, or (--hub,
    or --backbone alone) the backbone's published weights through the Hugging Face cache."""
    from grw_edge.checkpoints import load_checkpoint
    from grw_edge.models import random_model

    chosen = [flag for flag, on in (("--checkpoint", checkpoint), ("--hub", hub),
                                    ("--random-init", random_init)) if on]
    if len(chosen) > 1:
        raise click.ClickException("choose exactly one of --checkpoint PATH, --hub or --random-init")
    if checkpoint:
        return load_checkpoint(checkpoint, ema=ema, backbone=backbone)
    if not backbone:
        raise click.ClickException(f"{chosen[0]} needs --backbone" if chosen else
                                   "pass --backbone B (its published weights) or --checkpoint PATH")
    if random_init:
        return random_model(backbone, seed=seed)
    return load_checkpoint(backbone, ema=ema, backbone=backbone)


def _weights_line(model) -> str:
    """Which weights a command runs, as the manifest's ``source`` records them."""
    origin = getattr(model, "origin", None)
    if origin is None:
        return f"weights: {model.backbone_spec.name}, random init"
    return (f"weights: {model.backbone_spec.name} {origin.weights} from "
            f"{origin.hub or origin.path} (sha256 {origin.sha256})")


def _positive_ints(text: str, option: str) -> list[int]:
    """Comma-separated positive integers, or a one-line usage error."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise click.BadParameter(f"expected comma-separated positive integers, got {text!r}",
                                 param_hint=option)
    return values

def _terminated(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so half-written artifacts and checkpoints are removed."""
    raise KeyboardInterrupt


def main() -> None:
    from grw_edge_runtime.litert import quiet_exit

    signal.signal(signal.SIGTERM, _terminated)
    quiet_exit()
    cli(prog_name="grw-edge")


if __name__ == "__main__":
    main()

