"""Device placement without a GPU: PyTorch's FakeTensorMode makes ``device="cuda"`` tensors
on a CPU-only machine and raises on any cpu/cuda mix (the ``meta`` device would not), so
these tests catch a tensor left on the CPU in the loss, the objective, a training step and
the torch session (issue 12: the GRW loss's index stayed on the CPU and crashed CUDA runs).
"""
import gc

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from grw_edge.loss import GrwSmoothingLoss
from grw_edge.models import HeadConfig, create_model
from grw_edge.training.objective import GrwObjective

CUDA = torch.device("cuda", 0)


def fake_cuda_model(**kwargs):
    """A small classifier whose weights live on the fake GPU (created there, not moved)."""
    with torch.device(CUDA):
        return create_model("movineta0s", head=HeadConfig(16, 1, 2, 32, 2), **kwargs)


def born_on_the_gpu(build):
    """``build`` run with the fake GPU as default device, its module ``.to()`` made a no-op:
    FakeTensorMode cannot move a module (``.to`` swaps fake parameters, which the mode's own
    weak references forbid), so the model is created where ``.to`` would have put it."""
    def wrapper(*args, **kwargs):
        with torch.device(CUDA):
            model = build(*args, **kwargs)
        model.to = lambda *_, **__: model
        return model

    return wrapper


def test_the_loss_runs_on_its_inputs_device_without_being_moved():
    with FakeTensorMode():
        loss = GrwSmoothingLoss(4)  # built on the CPU, as the README's example does
        value = loss(torch.randn(2, 4, 8, device=CUDA, requires_grad=True))
        assert value.device == CUDA
        assert loss._index_on(CUDA) is loss._index_on(CUDA)  # copied to the GPU once
        assert loss(torch.randn(2, 4, 8)).device.type == "cpu"  # and still runs on the CPU


def test_the_objective_keeps_everything_on_the_gpu():
    with FakeTensorMode():
        model = fake_cuda_model(T=4)
        objective = GrwObjective(model, T=4, grw_weight=1.0, intermediate_weight=1.0)
        X = torch.rand(2, 8, 3, 32, 32, device=CUDA)
        y = torch.tensor([0, 1], device=CUDA)
        loss, parts, logits = objective(model, X, y)  # backward needs a real CUDA context
    assert loss.device == logits.device == CUDA
    assert set(parts) == {"ce", "grw", "grw_intermediate", "loss"}
    assert all(part.device == CUDA for part in parts.values())


@pytest.mark.filterwarnings("ignore:CUDA is not available")  # autocast: no real CUDA here
def test_a_training_step_runs_on_the_gpu_as_far_as_fake_tensors_go(tmp_path, monkeypatch):
    """Trainer set-up and the step's forward part (batch to the device, autocast, objective,
    accuracy) on the fake GPU; backward needs a real CUDA context and is not run here."""
    from grw_edge.data.synthetic import make_synthetic_dataset
    from grw_edge.training import TrainConfig, Trainer
    import grw_edge.training.trainer as trainer_module

    make_synthetic_dataset(tmp_path / "data", videos_per_class=1, frames=8, size=32, fps=10.0)
    monkeypatch.setattr(trainer_module, "local_device", lambda: CUDA)
    monkeypatch.setattr(trainer_module, "build_model", born_on_the_gpu(trainer_module.build_model))
    # The EMA copy is made with deepcopy, which reads a fake tensor's (absent) data and
    # corrupts the heap; the EMA is only used after backward, which cannot run here.
    monkeypatch.setattr(trainer_module, "AveragedModel", lambda model, **options: None)
    cfg = TrainConfig(backbone="movineta0s", data=str(tmp_path / "data"), out=str(tmp_path / "run"),
                      frames=4, fps=10, resolution=32, T=4, embed_dim=16, head_depth=1,
                      head_heads=2, head_mlp=32, batch_size=2, precision="bf16",
                      intermediate_weight=1.0)
    with FakeTensorMode():
        trainer = Trainer(cfg)
        assert trainer.dataset.raw  # on a GPU the loader ships uint8 clips, resized there
        clips = [torch.randint(0, 255, (4, 40, 48, 3), dtype=torch.uint8) for _ in range(2)]
        batch = {"frames": clips, "label": torch.tensor([0, 1])}  # as collate_clips gives
        assert all(p.device == CUDA for p in trainer.model.parameters())
        loss, parts = trainer._forward(batch)
        assert loss.device == CUDA and all(part.device == CUDA for part in parts.values())
        del trainer, batch, loss, parts
        gc.collect()  # the model and objective form a cycle: free the fakes inside the mode


def test_the_torch_session_streams_on_the_gpu(monkeypatch):
    """The session's initial states and its streaming step stay on the (fake) GPU; CUDA
    graphs cannot be captured on fake tensors, so this is the eager step."""
    from grw_edge.runtimes.torch import TorchSession

    with FakeTensorMode():
        model = born_on_the_gpu(create_model)("movineta0s", head=HeadConfig(16, 1, 2, 32, 2)).eval()
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the session's check
        session = TorchSession.for_model(model, resolution=32, device="cuda", cuda_graphs=False)
        assert all(state.device == CUDA for state in session._states.values())
        embeddings, finite = session.step_on_device(torch.rand(1, 3, 1, 32, 32, device=CUDA))
        assert embeddings.device == finite.device == CUDA
        assert all(state.device == CUDA for state in session._states.values())
        del session, model, embeddings, finite
        gc.collect()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_the_torch_session_says_clearly_when_cuda_is_missing():
    from grw_edge.errors import BackendUnavailableError
    from grw_edge.runtimes.torch import resolve_device

    with pytest.raises(BackendUnavailableError, match="no CUDA GPU is visible"):
        resolve_device("cuda", None)
    with pytest.raises(BackendUnavailableError, match="CUDA graphs need device='cuda'"):
        resolve_device("cpu", True)
    assert resolve_device("cpu", None) == (torch.device("cpu"), False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_steps_match_eager_steps():
    import numpy as np

    from grw_edge.runtimes.torch import TorchSession
    from tests.conftest import small_random_model

    model = small_random_model("movineta0s")
    eager = TorchSession.for_model(model, resolution=64, device="cuda", cuda_graphs=False)
    graphed = TorchSession.for_model(model, resolution=64, device="cuda", cuda_graphs=True)
    frames = np.random.default_rng(0).random((8, 1, 3, 1, 64, 64), dtype=np.float32)
    for session in (eager, graphed):
        session.reset()
    for frame in frames:
        assert np.abs(eager.push(frame) - graphed.push(frame)).max() <= 1e-4
    assert np.abs(eager.classify() - graphed.classify()).max() <= 1e-4
