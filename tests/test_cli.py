"""The command line: help, listings, info, the published weights by default, and one-line
user errors."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from huggingface_hub import constants

from grw_edge.checkpoints import file_sha256, save_checkpoint
from grw_edge.cli import cli
from grw_edge.data.video import write_video
from grw_edge.manifest import read_manifest
from grw_edge.models import HeadConfig, create_model, randomize_
from tests.conftest import run_grw_edge, small_random_model

HEADLINE = ("export", "--backbone", "movineta1s", "--target", "tensorrt")


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
    (("export", "--backbone", "movineta0s", "--hub", "--random-init"),
     "choose exactly one of --checkpoint PATH, --hub or --random-init"),
    (("export",), "pass --backbone B (its published weights) or --checkpoint PATH"),
    (("predict", "clip.mp4", "--random-init"), "--random-init needs --backbone"),
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


def test_the_headline_command_exports_the_published_weights(hub_cache, tmp_path):
    """`grw-edge export --backbone movineta1s --target tensorrt` exactly as written, from the
    cached a1s_grw.pt (an A1S snapshot with a small head, so at the full 172 px it stays fast)."""
    cached = hub_cache.put(small_random_model("movineta1s"))
    work = tmp_path / "work"
    work.mkdir()
    result = run_grw_edge(*HEADLINE, env=hub_cache.env, cwd=work, timeout=600)
    assert result.returncode == 0, result.stderr
    url = f"hf://DrGil/grw-smoothing-movinet@{hub_cache.revision}/a1s_grw.pt"
    sha256 = file_sha256(cached)
    assert f"weights: movineta1s plain from {url} (sha256 {sha256})" in result.stdout
    manifest = read_manifest(work / "movineta1s-tensorrt")
    assert manifest.source == {"checkpoint": str(cached), "checkpoint_sha256": sha256,
                               "weights": "plain", "from": url}
    assert manifest.target == "tensorrt" and manifest.parity["passed"]
    assert "build_command" in manifest.engine or manifest.engine["built"]
    assert (work / "movineta1s-tensorrt" / manifest.step["file"]).is_file()


def test_the_headline_command_offline_with_an_empty_cache_is_one_line(hub_cache, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    result = run_grw_edge(*HEADLINE, env=hub_cache.env, cwd=work)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "offline mode is on (HF_HUB_OFFLINE)" in lines[0]
    assert "--checkpoint PATH" in lines[0]
    assert not any(work.iterdir()) and not any(hub_cache.root.iterdir())


def test_predict_and_verify_use_the_cached_published_weights(run, hub_cache, tmp_path,
                                                              monkeypatch):
    """--backbone alone predicts with the cached published file; an artifact exported from it
    without reference weights verifies against it, named by nothing or by its backbone."""
    cached = hub_cache.put(small_random_model("movineta0s"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache.root))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    said = (f"weights: movineta0s plain from hf://DrGil/grw-smoothing-movinet@"
            f"{hub_cache.revision}/a0s_grw.pt (sha256 {file_sha256(cached)})")
    video = tmp_path / "noise.mp4"
    write_video(video, np.random.default_rng(0).integers(0, 256, (8, 40, 40, 3), np.uint8), 10.0)
    predicted = run("predict", str(video), "--backbone", "movineta0s", "--resolution", "32",
                    "--frames", "4", "--fps", "10")
    assert predicted.exit_code == 0 and predicted.output.splitlines()[0] == said
    out = tmp_path / "a0s"
    exported = run("export", "--backbone", "movineta0s", "--resolution", "32", "--parity-frames",
                   "2", "--no-reference", "--out", str(out))
    assert exported.exit_code == 0 and said in exported.output.splitlines()
    for extra in ((), ("--checkpoint", "movineta0s")):
        verified = run("verify", str(out), "--clips", "1", "--frames", "2", *extra)
        assert verified.exit_code == 0 and "PASS" in verified.output
    other = save_checkpoint(small_random_model("movineta0s", seed=1), tmp_path / "other.pt")
    refused = run("verify", str(out), "--checkpoint", str(other))
    assert refused.exit_code == 1 and len(refused.output.strip().splitlines()) == 1
    assert "sha256 differs from the manifest's" in refused.output


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
