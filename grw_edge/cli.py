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
