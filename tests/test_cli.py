"""The command line: help, listings, info, and one-line user errors."""
import json

import pytest
import torch
from click.testing import CliRunner

from grw_edge.cli import cli
from grw_edge.models import HeadConfig, create_model, randomize_


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli, list(args), catch_exceptions=False)

    return invoke


def test_help_lists_the_commands(run):
    result = run("--help")
    assert result.exit_code == 0
    for command in ("backbones", "download", "info"):
        assert command in result.output


def test_backbones_table_and_json(run):
    table = run("backbones")
    assert table.exit_code == 0 and "movineta3b" in table.output and "clip" in table.output
    rows = json.loads(run("backbones", "--json").output)
    assert rows[1]["backbone"] == "movineta1s" and rows[1]["resolution"] == 172


def test_info_reports_the_snapshot(run, tmp_path, write_upstream_snapshot):
    head = HeadConfig(embed_dim=64, depth=1, num_heads=2, mlp_dim=128, num_classes=600)
    model = randomize_(create_model("movineta0s", head=head, T=5))
    path = write_upstream_snapshot(model, tmp_path / "a0s.pt", ema_model=model, num_samples=42)
    info = json.loads(run("info", str(path), "--json").output)
    assert info["backbone"] == "movineta0s" and info["format"] == "upstream-v10"
    assert info["head"] == head.to_dict() and info["T"] == 5
    assert info["ema"] is True and info["num_samples"] == 42
    assert info["parameters"]["total"] == sum(p.numel() for p in model.parameters())
    text = run("info", str(path))
    assert text.exit_code == 0 and "num_samples  42" in text.output


@pytest.mark.parametrize("args,message", [
    (("download", "movinet9"), "unknown backbone 'movinet9'; choose one of: movineta0s"),
    (("info", "no/such/file.pt"), "no checkpoint file at no/such/file.pt"),
])
def test_user_errors_are_one_line(run, args, message):
    result = run(*args)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_a_hostile_checkpoint_is_one_line_too(run, tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"model_state": {}, "x": torch.nn.Linear(2, 2)}, evil)  # a pickled module
    result = run("info", str(evil))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "refused to load" in lines[0]
