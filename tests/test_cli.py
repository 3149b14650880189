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


@pytest.mark.parametrize("content", [b"a text file, not weights\n", b""])
def test_a_file_that_is_no_checkpoint_is_one_line(run, tmp_path, content):
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    result = run("export", "--checkpoint", str(path), "--out", str(tmp_path / "out"))
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and "is not a checkpoint" in lines[0]


def test_random_init_is_seeded_and_every_state_matters(run, tmp_path):
    """--random-init draws seeded weights with live ReZero branches: the artifact holds
    the weights random_model(seed) gives, and perturbing any state changes the output."""
    from grw_edge.checkpoints import load_checkpoint
    from grw_edge.models import random_model

    out = tmp_path / "a0s"
    result = run("export", "--backbone", "movineta0s", "--random-init", "--seed", "3",
                 "--resolution", "32", "--parity-frames", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    exported = load_checkpoint(out / "reference.safetensors").state_dict()
    same, other = random_model("movineta0s", seed=3), random_model("movineta0s", seed=4)
    assert all(torch.equal(value, same.state_dict()[key]) for key, value in exported.items())
    assert not torch.equal(other.state_dict()["ln.weight"], exported["ln.weight"])
    backbone = same.video_backbone
    frame = torch.rand(1, 3, 1, 32, 32)
    with torch.no_grad():
        _, states = backbone.step(torch.rand(1, 3, 5, 32, 32))
        expected, _ = backbone.step(frame, states)
        for name, value in states.items():
            changed = {**states, name: value + 1 if name != "frame_count" else value * 2}
            assert (backbone.step(frame, changed)[0] - expected).abs().max() > 1e-6, name
