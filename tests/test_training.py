"""Training: the objective, learning, DDP on gloo under torchrun, and exact kill-and-resume."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from grw_edge.checkpoints import read_snapshot
from grw_edge.cli import cli
from grw_edge.data.video import write_video
from grw_edge.models import HeadConfig, create_model, randomize_
from grw_edge.training import TrainConfig, Trainer
from grw_edge.training.objective import GrwObjective
from grw_edge.training.trainer import epoch_batches
from tests.video_files import garble_payload, write

SMALL = ["--frames", "4", "--fps", "10", "--resolution", "32", "--embed-dim", "16",
         "--head-depth", "1", "--warmup-steps", "1", "--log-every", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Two classes told apart by colour, three 12-frame videos each."""
    root = tmp_path_factory.mktemp("train_data")
    rng = np.random.default_rng(0)
    for label, name in enumerate(("blue", "red")):
        for i in range(3):
            frames = rng.integers(0, 80, (12, 36, 36, 3), dtype=np.uint8)
            frames[..., 2 - 2 * label] += 150
            write_video(root / "train" / name / f"{i}.mp4", frames, 10.0)
    return root


def config(data, out, **changes) -> TrainConfig:
    settings = dict(backbone="movineta0s", data=str(data), out=str(out), frames=4, fps=10,
                    resolution=32, T=4, embed_dim=16, head_depth=1, head_heads=2, head_mlp=32,
                    steps=4, batch_size=3, warmup_steps=1, lr=3e-3, log_every=1)
    settings.update(changes)
    return TrainConfig(**settings)


def test_global_batches_split_across_ranks():
    single = epoch_batches(12, 4, 0, 0, 0, 1)
    ranks = [epoch_batches(12, 2, 0, 0, r, 2) for r in range(2)]
    assert [a + b for a, b in zip(*ranks)] == single


def test_grw_term_is_nonzero_and_has_gradients():
    model = randomize_(create_model("movineta0s", head=HeadConfig(16, 1, 2, 32, 2), T=4), 0)
    objective = GrwObjective(model, T=4, grw_weight=1.0, intermediate_weight=1.0)
    X, y = torch.rand(2, 8, 3, 32, 32), torch.tensor([0, 1])
    loss, parts, _ = objective(model, X, y)
    assert parts["grw"] > 0 and parts["grw_intermediate"] > 0
    grw_only = GrwObjective(model, T=4, grw_weight=1.0)
    _, _, _ = grw_only(model, X, y)
    model.zero_grad()
    (loss - torch.nn.functional.cross_entropy(model(X)[0], y)).backward()
    stem = model.video_backbone.encoder.conv1.conv_1[0].weight
    assert stem.grad is not None and stem.grad.abs().sum() > 0


def test_a_few_steps_lower_the_loss(data, tmp_path):
    trainer = Trainer(config(data, tmp_path / "run", batch_size=6, steps=12))
    batch = next(iter(torch.utils.data.DataLoader(trainer.dataset, batch_size=6)))
    losses = [trainer._train_step(batch)["loss"] for _ in range(12)]
    assert losses[-1] < losses[0]


def _train_cli(*args: str, processes: int | None = None, **popen) -> subprocess.Popen:
    """``grw-edge train`` in a subprocess; under torchrun when ``processes`` is given."""
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 f"--nproc_per_node={processes}", "-m"] if processes else [sys.executable, "-m"])
    command = [*launcher, "grw_edge.cli", "train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRW_EDGE_CACHE": popen.pop("cache")}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen)


def _finish(process: subprocess.Popen) -> None:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]


def test_two_gloo_processes_match_one_on_the_first_step(data, tmp_path):
    # Frozen batch-norm statistics: on the CPU each process would otherwise normalise its
    # own half of the batch, which one process with the whole batch cannot reproduce.
    common = ["--backbone", "movineta0s", "--data", str(data), "--steps", "1", "--freeze-bn",
              *SMALL]
    _finish(_train_cli(*common, "--out", str(tmp_path / "one"), "--batch-size", "4",
                       processes=1, cache=str(tmp_path)))
    _finish(_train_cli(*common, "--out", str(tmp_path / "two"), "--batch-size", "2",
                       processes=2, cache=str(tmp_path)))
    one = read_snapshot(tmp_path / "one" / "checkpoint.safetensors").state_dict
    two = read_snapshot(tmp_path / "two" / "checkpoint.safetensors").state_dict
    torch.manual_seed(0)  # the trainer seeds before building: the same initial weights
    start = create_model("movineta0s", head=HeadConfig(16, 1, 4, 512, 2), T=4).state_dict()
    moved = max((one[k].float() - start[k].float()).abs().max().item() for k in one)
    worst = max((one[k].float() - two[k].float()).abs().max().item() for k in one)
    # Adam's first step is about lr * sign(gradient); float-level gradient differences
    # (another reduction order) only show in near-zero gradients, far below the step size.
    assert moved >= 5e-4 and worst <= 0.1 * moved


def test_kill_and_resume_ends_with_the_same_weights(data, tmp_path):
    args = ["--backbone", "movineta0s", "--data", str(data), "--steps", "60", "--batch-size",
            "2", "--checkpoint-every", "2", *SMALL]
    _finish(_train_cli(*args, "--out", str(tmp_path / "straight"), cache=str(tmp_path)))

    interrupted = tmp_path / "interrupted"
    process = _train_cli(*args, "--out", str(interrupted), cache=str(tmp_path))
    deadline = time.time() + 240
    while not (interrupted / "checkpoint.safetensors").exists() and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # no chance to clean up or save
    process.communicate()
    saved = read_snapshot(interrupted / "checkpoint.safetensors").extra["step"]
    assert saved < 60, "the run finished before it could be killed"
    _finish(_train_cli(*args, "--out", str(interrupted), "--resume", cache=str(tmp_path)))

    straight = read_snapshot(tmp_path / "straight" / "checkpoint.safetensors")
    resumed = read_snapshot(interrupted / "checkpoint.safetensors")
    assert resumed.extra["step"] == 60
    for key, value in straight.state_dict.items():
        assert torch.equal(value, resumed.state_dict[key]), key
    for key, value in straight.ema_state_dict.items():
        assert torch.equal(value, resumed.ema_state_dict[key]), key


def test_clear_errors(data, tmp_path):
    runner = CliRunner()
    missing = runner.invoke(cli, ["train", "--backbone", "movineta0s", "--data",
                                  str(tmp_path / "none"), "--out", str(tmp_path / "o"), *SMALL])
    assert missing.exit_code == 1 and "no split folder" in missing.output
    other = randomize_(create_model("movineta1s", head=HeadConfig(16, 1, 2, 32, 2)), 0)
    from grw_edge.checkpoints import save_checkpoint

    foreign = save_checkpoint(other, tmp_path / "a1s.safetensors")
    wrong = runner.invoke(cli, ["train", "--backbone", "movineta0s", "--data", str(data),
                                "--out", str(tmp_path / "o"), "--init", str(foreign), *SMALL])
    assert wrong.exit_code == 1
    assert "holds movineta1s weights, not movineta0s" in wrong.output
    nothing = runner.invoke(cli, ["train", "--backbone", "movineta0s", "--data", str(data),
                                  "--out", str(tmp_path / "empty"), "--resume", *SMALL])
    assert nothing.exit_code == 1 and "nothing to resume" in nothing.output


def test_batches_run_on_across_epochs_from_any_step():
    from itertools import islice

    from grw_edge.training.trainer import batches_from

    epochs = [b for epoch in range(3) for b in epoch_batches(10, 3, epoch, 0, 0, 1)]
    assert list(islice(batches_from(0, 10, 3, 0, 0, 1), 9)) == epochs
    assert list(islice(batches_from(4, 10, 3, 0, 0, 1), 5)) == epochs[4:]


def test_the_first_batch_is_decoded_in_pieces_and_joined_back(data, tmp_path):
    """Every worker decodes a share of the first batch; the step sees it whole, equal to
    the batch one worker would have made, and the batches after it are untouched."""
    from itertools import islice

    from grw_edge.data.kinetics import collate_clips
    from grw_edge.training.trainer import batches_from, joined_first, split_first

    pieces = list(islice(split_first(batches_from(0, 10, 4, 0, 0, 1), 3), 5))
    whole = list(islice(batches_from(0, 10, 4, 0, 0, 1), 3))
    assert [len(p) for p in pieces[:3]] == [1, 1, 2]
    assert sum(pieces[:3], []) == whole[0] and pieces[3:] == whole[1:]
    dataset = Trainer(config(data, tmp_path / "run")).dataset
    # in this process (a forked worker could deadlock on threads other tests started)
    loader = torch.utils.data.DataLoader(dataset, collate_fn=collate_clips,
                                         batch_sampler=split_first(iter([[0, 1, 2], [3]]), 2))
    joined = list(joined_first(loader, 2))
    alone = [collate_clips([dataset[i] for i in batch]) for batch in ([0, 1, 2], [3])]
    assert len(joined) == 2
    for got, expected in zip(joined, alone):
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            assert (torch.equal(got[key], value) if isinstance(value, torch.Tensor)
                    else got[key] == value), key


def _grey_folder(root, broken: dict[str, int], good: int = 1):
    """``good`` 8-frame videos per class (two clips each of 4 frames at 10 fps) and, per class,
    ``broken[class]`` videos that probe but whose every packet is noise."""
    for name in ("blue", "red"):
        for i in range(good):
            write(root / "train" / name / f"{i}.mp4", 8, fps=10)
        for i in range(broken.get(name, 0)):
            garble_payload(write(root / "train" / name / f"broken{i}.mp4", 8, fps=10))
    return root


def test_a_folder_where_no_clip_decodes_stops_with_one_line(tmp_path):
    root = _grey_folder(tmp_path / "data", {"blue": 1, "red": 1}, good=0)
    result = CliRunner().invoke(cli, ["train", "--backbone", "movineta0s", "--data", str(root),
                                      "--out", str(tmp_path / "run"), "--steps", "2",
                                      "--batch-size", "2", *SMALL],
                                env={"GRW_EDGE_CACHE": str(tmp_path / "cache")})
    assert result.exit_code == 1
    line, = result.output.strip().splitlines()[-1:]
    assert "failed to decode" in line and "blue/broken0.mp4" in line
    assert "Traceback" not in result.output
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()


def test_a_mixed_folder_trains_on_full_batches_and_names_the_failed_file(tmp_path):
    root = _grey_folder(tmp_path / "data", {"red": 1})  # 6 clips, 2 of them broken
    args = ["train", "--backbone", "movineta0s", "--data", str(root), "--steps", "2",
            "--batch-size", "3", *SMALL]
    env = {"GRW_EDGE_CACHE": str(tmp_path / "cache")}
    stopped = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "strict")], env=env)
    assert stopped.exit_code == 1 and "--max-failed-clips 0.01" in stopped.output
    assert "red/broken0.mp4" in stopped.output.strip().splitlines()[-1]

    run = tmp_path / "run"
    trained = CliRunner().invoke(cli, [*args, "--out", str(run), "--max-failed-clips", "0.5"],
                                 env=env)
    assert trained.exit_code == 0, trained.output
    assert "skipped clip" in trained.output and "red/broken0.mp4" in trained.output
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    named = {f["path"] for r in records for f in r.get("failed", [])}
    assert named == {"red/broken0.mp4"}
    steps = [r for r in records if "loss" in r]
    assert [r["failed_clips"] for r in steps][-1] == 2  # one epoch: every clip was tried
    assert read_snapshot(run / "checkpoint.safetensors").extra["step"] == 2


def test_two_processes_count_the_failed_clips_of_both(tmp_path):
    """Rank 1 alone meets the broken clips (seed 0 deals them to it); rank 0, which logs,
    names them, and the limit holds for the clips of both ranks, all ranks stopping."""
    root = _grey_folder(tmp_path / "data", {"red": 1})  # clips 4 and 5 are broken
    dealt = [sorted(c for b in epoch_batches(6, 1, 0, 0, rank, 2) for c in b) for rank in (0, 1)]
    assert dealt == [[1, 2, 3], [0, 4, 5]]
    args = ["--backbone", "movineta0s", "--data", str(root), "--steps", "3", "--batch-size",
            "1", *SMALL]
    run = tmp_path / "run"
    _finish(_train_cli(*args, "--out", str(run), "--max-failed-clips", "0.5", processes=2,
                       cache=str(tmp_path)))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {f["clip"] for r in records for f in r.get("failed", [])} == {4, 5}
    assert [r["failed_clips"] for r in records if "loss" in r] == [2, 2, 2]
    stopped = _train_cli(*args, "--out", str(tmp_path / "strict"), "--max-failed-clips", "0.2",
                         processes=2, cache=str(tmp_path))
    _, err = stopped.communicate(timeout=300)
    assert stopped.returncode != 0
    assert err.count("2 of 6 clips in") == 2  # each rank stops with the same line


def test_a_resumed_run_remembers_the_clips_that_failed(tmp_path):
    from grw_edge.training import train

    root = _grey_folder(tmp_path / "data", {"red": 1})
    cfg = config(root, tmp_path / "run", steps=4, batch_size=3, max_failed_clips=0.5)
    train(cfg, stop_after=2)  # one epoch: both broken clips met
    resumed = Trainer(cfg, resume=True)
    assert resumed.step == 2 and sorted(resumed.failures.by_clip) == [4, 5]


def test_failed_clips_are_replaced_so_batches_stay_full(tmp_path):
    from grw_edge.data.kinetics import VideoClipDataset, collate_clips

    root = _grey_folder(tmp_path / "data", {"red": 1})
    options = dict(frames_per_clip=4, fps=10, resize=36, crop=32, cache_dir=tmp_path / "c")
    plain = VideoClipDataset(root, "train", **options)
    replacing = VideoClipDataset(root, "train", replace_failed=True, **options)
    broken = [c for c in range(len(plain)) if "broken" in plain.clip_path(c)]
    assert len(broken) == 2 and not plain[broken[0]]["ok"]
    assert plain[broken[0]]["frames"] is None
    batch = collate_clips([replacing[c] for c in range(len(replacing))])
    assert batch["frames"].shape[0] == len(replacing)  # full: each broken clip replaced
    assert all("broken" not in replacing.clip_path(c) for c in batch["clip"].tolist())
    assert {f["clip"] for f in batch["failures"]} == set(broken)
    assert batch["frames"].abs().sum(dim=(1, 2, 3, 4)).min() > 0  # no all-zero clip


def test_the_log_keeps_start_up_apart_from_the_steady_speed(data, tmp_path, monkeypatch):
    """metrics.jsonl (and TensorBoard, the bar) get ``first_step_s``, the loop's start to its
    first step's end, ``clips_per_s`` over the last logging window only, and ``data_wait``,
    the share of that window spent waiting for batches.  The trainer's clock is a fake: each
    batch takes 0.5 s to arrive, the first step 10 s (start-up) and the others 1 s, so the
    numbers are exact and the test does not depend on this machine's speed."""
    import json
    import types

    import grw_edge.training.trainer as trainer_module

    clock = [0.0]
    monkeypatch.setattr(trainer_module, "time", types.SimpleNamespace(
        perf_counter=lambda: clock[0]))
    trainer = Trainer(config(data, tmp_path / "run", batch_size=2, steps=5, log_every=2))
    step, steps, joined = trainer._train_step, [], trainer_module.joined_first

    def timed(batch):
        clock[0] += 1.0 if steps else 10.0
        steps.append(1)
        return step(batch)

    def slow_batches(loader, pieces):
        for batch in joined(loader, pieces):
            clock[0] += 0.5
            yield batch

    monkeypatch.setattr(trainer, "_train_step", timed)
    monkeypatch.setattr(trainer_module, "joined_first", slow_batches)
    scalars = []
    if trainer._tensorboard is not None:
        monkeypatch.setattr(trainer._tensorboard, "add_scalar",
                            lambda key, value, step: scalars.append(key))
    trainer.run()
    records = [json.loads(line) for line in (tmp_path / "run" / trainer_module.METRICS)
               .read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 5]
    assert [r["first_step_s"] for r in records] == [10.5] * 3  # the first batch's wait too
    # 2 clips per 1.5 s (0.5 s of it waiting), start-up apart
    assert [r["clips_per_s"] for r in records] == pytest.approx([4 / 3] * 3)
    assert [r["data_wait"] for r in records] == pytest.approx([1 / 3] * 3)
    assert not scalars or {"first_step_s", "clips_per_s", "data_wait"} <= set(scalars)


def test_start_up_settings(monkeypatch):
    """cuDNN autotuning on CUDA only (set once, in the trainer); on a GPU, batches are
    pinned and prefetched deeper."""
    from grw_edge.training.trainer import loader_options, tune_kernels

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    tune_kernels(torch.device("cpu"))
    assert torch.backends.cudnn.benchmark is False
    tune_kernels(torch.device("cuda", 0))  # a device object; no GPU is touched
    assert torch.backends.cudnn.benchmark is True
    assert loader_options(2, False) == {"num_workers": 2, "pin_memory": False,
                                        "prefetch_factor": None}
    assert loader_options(0, True) == {"num_workers": 0, "pin_memory": True,
                                       "prefetch_factor": None}
    assert loader_options(4, True)["prefetch_factor"] == 4
    from grw_edge.training.trainer import loader_hint

    assert loader_hint(0, False) is None and loader_hint(8, True) is None
    assert "--workers 0: videos decode in the training process" in loader_hint(0, True)
    assert "one worker" in loader_hint(1, True)
