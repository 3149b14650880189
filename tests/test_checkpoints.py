"""Loading upstream snapshots and grw-edge checkpoints: fidelity, safety, clear refusals."""
import os
import pickle
from pathlib import Path

import pytest
import torch

import grw_edge
from grw_edge import checkpoints
from grw_edge.checkpoints import read_snapshot, save_checkpoint
from grw_edge.errors import CheckpointError
from grw_edge.models import HeadConfig, create_model, randomize_
from tests.conftest import run_grw_edge

HEAD = HeadConfig(embed_dim=48, depth=1, num_heads=2, mlp_dim=96, num_classes=600)
BACKBONES = ["movineta0s", "movineta1s", "movineta2s", "movineta3b"]


def random_model(name: str, seed: int, head: HeadConfig = HEAD, T: int = 5):
    return randomize_(create_model(name, head=head, T=T), seed).eval()


def outputs(model, seed: int = 9):
    X = torch.rand(1, 5, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(X)


@pytest.mark.parametrize("name", BACKBONES)
def test_upstream_snapshots_load_key_for_key(name, tmp_path, write_upstream_snapshot):
    plain, ema = random_model(name, 1), random_model(name, 2)
    path = write_upstream_snapshot(plain, tmp_path / f"{name}.pt", ema_model=ema)
    snapshot = read_snapshot(path)
    assert (snapshot.backbone, snapshot.T, snapshot.head) == (name, 5, HEAD)
    assert snapshot.num_samples == 1234 and snapshot.has_ema

    for weights, source in ((False, plain), (True, ema)):
        loaded = grw_edge.load_checkpoint(path, ema=weights)
        assert not loaded.training
        expected = source.state_dict()
        assert list(loaded.state_dict()) == list(expected)
        assert all(torch.equal(loaded.state_dict()[k], v) for k, v in expected.items())
        assert loaded.origin.weights == ("ema" if weights else "plain")
        for got, want in zip(outputs(loaded), outputs(source)):
            assert torch.equal(got, want)


def test_backbone_mismatch_names_both(tmp_path, write_upstream_snapshot):
    path = write_upstream_snapshot(random_model("movineta1s", 0), tmp_path / "a1s.pt")
    with pytest.raises(CheckpointError, match="holds movineta1s weights, not movineta0s"):
        grw_edge.load_checkpoint(path, backbone="movineta0s")


def test_pickled_backbone_class_must_agree_with_the_weights(tmp_path, write_upstream_snapshot):
    path = write_upstream_snapshot(
        random_model("movineta0s", 0), tmp_path / "liar.pt",
        backbone_class=grw_edge.get_backbone("movineta2s").upstream_class)
    with pytest.raises(CheckpointError, match="says its backbone is movineta2s but its weights "
                                              "are movineta0s's"):
        read_snapshot(path)


def test_missing_ema_and_foreign_weights_are_refused(tmp_path, write_upstream_snapshot):
    path = write_upstream_snapshot(random_model("movineta0s", 0), tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="has no EMA weights"):
        grw_edge.load_checkpoint(path, ema=True)
    model = random_model("movineta0s", 0)
    state = model.state_dict()
    del state["video_backbone._encoder.blocks.b0_l0.alpha"]
    torch.save({"model_state": state}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError):
        read_snapshot(tmp_path / "partial.pt")


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"model_state": {}, "payload": _RunsCode(marker), "version": 10}, evil)
    with pytest.raises(CheckpointError, match="refused to load"):
        grw_edge.load_checkpoint(evil)
    assert not marker.exists()
    raw = tmp_path / "raw.pkl"  # a bare pickle, not a torch zip
    raw.write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(CheckpointError):
        grw_edge.load_checkpoint(raw)
    assert not marker.exists()


def test_damaged_files_get_one_clear_error(tmp_path, write_upstream_snapshot):
    path = write_upstream_snapshot(random_model("movineta0s", 0), tmp_path / "ok.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_snapshot(truncated)
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        read_snapshot(tmp_path / "absent.pt")


def test_grw_edge_checkpoint_round_trip(tmp_path):
    model, ema = random_model("movineta2s", 3, T=4), random_model("movineta2s", 4, T=4)
    path = save_checkpoint(model, tmp_path / "ours.safetensors", ema_state_dict=ema.state_dict(),
                           num_samples=77, extra={"step": 10})
    snapshot = read_snapshot(path)
    assert snapshot.format == "grw-edge-v1" and snapshot.backbone == "movineta2s"
    assert (snapshot.T, snapshot.num_samples, snapshot.extra) == (4, 77, {"step": 10})
    X = torch.rand(1, 4, 3, 32, 32)
    with torch.no_grad():
        for weights, source in ((False, model), (True, ema)):
            loaded = grw_edge.load_checkpoint(path, ema=weights)
            assert torch.equal(loaded(X)[0], source(X)[0])
    assert [p.name for p in tmp_path.iterdir()] == ["ours.safetensors"]


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    model = random_model("movineta0s", 0)
    target = save_checkpoint(model, tmp_path / "ckpt.safetensors")
    before = target.read_bytes()

    def crash(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(random_model("movineta0s", 1), target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.safetensors"]


def test_download_uses_the_hf_cache_offline(hub_cache):
    cached = hub_cache.put(random_model("movineta1s", 5))
    env = hub_cache.env

    result = run_grw_edge("download", "movineta1s", env=env)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == cached
    info = run_grw_edge("info", "movineta1s", env=env)  # a backbone name resolves through the hub
    assert info.returncode == 0 and "movineta1s" in info.stdout
    assert f"hf://DrGil/grw-smoothing-movinet@{hub_cache.revision}/a1s_grw.pt" in info.stdout

    missing = run_grw_edge("download", "movineta0s", env=env)
    assert missing.returncode == 1
    lines = missing.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in missing.stderr
    assert "offline mode is on" in lines[0] and "--checkpoint PATH" in lines[0]
