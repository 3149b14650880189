"""Training: the objective, learning, DDP on gloo under torchrun, and exact kill-and-resume."""
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


def test_the_log_keeps_start_up_apart_from_the_steady_speed(data, tmp_path, monkeypatch):
    """metrics.jsonl (and TensorBoard, the bar) get ``first_step_s``, the loop's start to its
    first step's end, and ``clips_per_s`` over the last logging window only.  The trainer's
    clock is a fake that each step moves: 10 s for the first (start-up), 1 s for the others,
    so the numbers are exact and the test does not depend on this machine's speed."""
    import json
    import types

    import grw_edge.training.trainer as trainer_module

    clock = [0.0]
    monkeypatch.setattr(trainer_module, "time", types.SimpleNamespace(
        perf_counter=lambda: clock[0]))
    trainer = Trainer(config(data, tmp_path / "run", batch_size=2, steps=5, log_every=2))
    step = trainer._train_step

    def timed(batch):
        clock[0] += 10.0 if clock[0] == 0 else 1.0
        return step(batch)

    monkeypatch.setattr(trainer, "_train_step", timed)
    scalars = []
    if trainer._tensorboard is not None:
        monkeypatch.setattr(trainer._tensorboard, "add_scalar",
                            lambda key, value, step: scalars.append(key))
    trainer.run()
    records = [json.loads(line) for line in (tmp_path / "run" / trainer_module.METRICS)
               .read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 5]
    assert [r["first_step_s"] for r in records] == [10.0] * 3
    assert [r["clips_per_s"] for r in records] == [2.0] * 3  # 2 clips a second, start-up apart
    assert not scalars or {"first_step_s", "clips_per_s"} <= set(scalars)


def test_start_up_settings(monkeypatch):
    """cuDNN autotuning on CUDA only (set once, in the trainer); loader workers persist and,
    on a GPU, batches are pinned and prefetched deeper."""
    from grw_edge.training.trainer import loader_options, tune_kernels

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    tune_kernels(torch.device("cpu"))
    assert torch.backends.cudnn.benchmark is False
    tune_kernels(torch.device("cuda", 0))  # a device object; no GPU is touched
    assert torch.backends.cudnn.benchmark is True
    assert loader_options(2, False) == {"num_workers": 2, "persistent_workers": True,
                                        "pin_memory": False, "prefetch_factor": None}
    assert loader_options(0, True) == {"num_workers": 0, "persistent_workers": False,
                                       "pin_memory": True, "prefetch_factor": None}
    assert loader_options(4, True)["prefetch_factor"] == 4
