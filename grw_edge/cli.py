"""The ``grw-edge`` command line.

User errors (``GrwEdgeError``) print one line and exit with status 1; no traceback.
"""
from __future__ import annotations

import json
import sys
from typing import Any

import click

from grw_edge.errors import GrwEdgeError


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
    click.echo(_table(rows))


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
@click.option("--backbone", help="Registered backbone (detected from --checkpoint if omitted).")
@click.option("--target", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("--out", type=click.Path(file_okay=False), help="Artifact directory "
              "[default: <backbone>-<target>].")
@click.option("--checkpoint", type=click.Path(), help="Checkpoint file to export.")
@click.option("--hub", is_flag=True, help="Export the published weights (downloaded).")
@click.option("--random-init", is_flag=True, help="Export freshly initialised weights.")
@click.option("--ema/--no-ema", default=False, show_default=True, help="Use the EMA weights.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--frames-per-step", type=click.IntRange(min=1), default=1, show_default=True,
              help="Frames each streaming step takes.")
@click.option("--resolution", type=click.IntRange(min=32), default=None,
              help="Input side in pixels [default: the backbone's evaluation resolution].")
@click.option("--opset", type=click.IntRange(min=17), default=18, show_default=True)
@click.option("--fused", is_flag=True, help="Also write fused.onnx: step + head, logits "
              "every step, the embedding window as a state.")
@click.option("--mobile", is_flag=True, help="Also write ONNX Runtime mobile (.ort) files "
              "and required_operators.config for a reduced build.")
@click.option("--no-reference", is_flag=True, help="Leave the PyTorch reference weights out "
              "(verify then needs --checkpoint).")
@click.option("--parity-clips", type=click.IntRange(min=1), default=1, show_default=True,
              help="Random clips the export-time parity check runs.")
@click.option("--parity-frames", type=click.IntRange(min=1), default=None,
              help="Frames per parity clip [default: frames per clip].")
@click.option("--overwrite", is_flag=True, help="Replace an existing artifact directory.")
def export_command(backbone: str | None, target: str, out: str | None, checkpoint: str | None,
                   hub: bool, random_init: bool, ema: bool, batch: int, frames_per_step: int,
                   resolution: int | None, opset: int, fused: bool, mobile: bool,
                   no_reference: bool, parity_clips: int, parity_frames: int | None,
                   overwrite: bool) -> None:
    """Export a model as an artifact directory: graphs, manifest.json, labels.txt."""
    from grw_edge.exporters import export

    model = _model_from_options(backbone, checkpoint, hub, random_init, ema)
    out = out or f"{model.backbone_spec.name}-{target}"
    path = export(model, target, out, batch=batch, frames_per_step=frames_per_step,
                  resolution=resolution, fused=fused, include_reference=not no_reference,
                  parity_clips=parity_clips, parity_frames=parity_frames, overwrite=overwrite,
                  opset=opset, mobile=mobile)
    from grw_edge.manifest import read_manifest

    parity = read_manifest(path).parity
    click.echo(f"wrote {path}: {', '.join(sorted(p.name for p in path.iterdir()))}")
    click.echo(f"parity vs PyTorch ({parity['clips']} clip(s) x {parity['frames']} frames): "
               f"max |d embeddings| {parity['max_abs_embeddings']:.2e}, max |d logits| "
               f"{parity['max_abs_logits']:.2e}, top-1 agreement {parity['top1_agreement']:.0%}")


@cli.command("verify")
@click.argument("artifact", type=click.Path())
@click.option("--backend", default=None, help="Runtime backend [default: the artifact's].")
@click.option("--checkpoint", type=click.Path(), default=None,
              help="Reference checkpoint [default: the artifact's reference weights].")
@click.option("--clips", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--frames", type=click.IntRange(min=1), default=None,
              help="Frames per clip [default: the artifact's frames per clip].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Intra-op threads.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify_command(artifact: str, backend: str | None, checkpoint: str | None, clips: int,
                   frames: int | None, seed: int, threads: int | None, as_json: bool) -> None:
    """Check that ARTIFACT, streamed frame by frame, agrees with the PyTorch reference."""
    from grw_edge.verify import verify_artifact

    report = verify_artifact(artifact, backend=backend, checkpoint=checkpoint, clips=clips,
                             frames=frames, seed=seed, threads=threads)
    problems = report.failures()
    if as_json:
        click.echo(json.dumps({**report.to_dict(), "passed": not problems,
                               "problems": problems}, indent=2))
    else:
        click.echo(_table([{
            "backend": report.backend, "clips": report.clips, "frames": report.frames,
            "max|d emb|": f"{report.max_abs_embeddings:.2e}",
            "max|d logits|": f"{report.max_abs_logits:.2e}",
            "top-1 agree": f"{report.top1_agreement:.1%}",
            "result": "FAIL" if problems else "PASS"}]))
    if problems:
        raise click.ClickException("; ".join(problems))


def _model_from_options(backbone: str | None, checkpoint: str | None, hub: bool,
                        random_init: bool, ema: bool):
    """The model a command was asked for: exactly one of checkpoint, hub or random init."""
    from grw_edge.checkpoints import load_checkpoint
    from grw_edge.models import create_model

    chosen = [flag for flag, on in (("--checkpoint", checkpoint), ("--hub", hub),
                                    ("--random-init", random_init)) if on]
    if len(chosen) != 1:
        raise click.ClickException("choose exactly one of --checkpoint PATH, --hub or --random-init")
    if checkpoint:
        return load_checkpoint(checkpoint, ema=ema, backbone=backbone)
    if not backbone:
        raise click.ClickException(f"{chosen[0]} needs --backbone")
    if hub:
        return load_checkpoint(backbone, ema=ema, backbone=backbone)
    return create_model(backbone).eval()


def _table(rows: list[dict[str, Any]]) -> str:
    headers = list(rows[0])
    cells = [[str(row[h]) for h in headers] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def main() -> None:
    cli(prog_name="grw-edge")


if __name__ == "__main__":
    main()
