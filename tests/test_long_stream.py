"""Long camera streams: the counter and the SE means stay exact in float16, the long-stream
parity check, and a 10,000-frame stream through a float16-I/O artifact."""
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from grw_edge.models import FRAME_COUNT, HeadConfig, create_model, randomize_
from grw_edge.models.movinet import COUNT_LEVELS, FrameCounter, frame_digits, level_shares
from grw_edge.streaming import states_after
from grw_edge.verify import long_stream_parity, verify_artifact

TINY_HEAD = HeadConfig(embed_dim=16, depth=1, num_heads=2, mlp_dim=32, num_classes=10)


@pytest.fixture(scope="module")
def model():
    return randomize_(create_model("movineta0s", head=TINY_HEAD), 3).eval()


@pytest.mark.parametrize("frames", [2047, 2048, 32**3 - 1, 10**7 - 1, 32**4 * 2047 - 1])
def test_the_counter_is_exact_in_float16(frames):
    digits = torch.tensor([frame_digits(frames)], dtype=torch.float16)
    _, counted = FrameCounter()(digits)
    assert counted.tolist() == [frame_digits(frames + 1)]
    assert sum(d * 32**j for j, d in enumerate(frame_digits(frames))) == frames


def test_the_cumulative_mean_stays_exact_in_float16_after_ten_million_frames():
    """From a stream of 10^7 - 3000 frames of mean 1, 6000 frames of 2.0 (crossing carries
    up to level 3): float16 level means follow the exact mean to a few units in the last
    place, as float32 does to float32's."""
    start = 10**7 - 3000
    exact = lambda n: (start + 2.0 * n) / (start + n)  # noqa: E731
    for dtype, bar in ((torch.float16, 4 * 2**-11), (torch.float32, 4 * 2**-24)):
        digits = torch.tensor([frame_digits(start)], dtype=dtype)
        means = (digits > 0).to(dtype).reshape(1, COUNT_LEVELS, 1, 1, 1).expand(1, -1, 3, 1, 1)
        x = torch.full((1, 1, 3, 1, 1), 2.0, dtype=dtype)
        counter = FrameCounter()
        for n in range(1, 6001):
            tick, digits = counter(digits)
            means, mean = tick.update(means, x)
            if n % 1000 == 0:
                assert abs(mean.double().max().item() / exact(n) - 1) <= bar, (dtype, n)
        assert digits.tolist() == [frame_digits(start + 6000)]
        assert abs(level_shares(digits).double().sum().item() - 1) <= bar


def test_states_after_keeps_the_mean_and_sets_the_counter(model):
    with torch.no_grad():
        _, states = model.video_backbone.step(torch.rand(1, 3, 40, 32, 32))
    moved = states_after(states, 10**7)
    assert moved[FRAME_COUNT].tolist() == [frame_digits(10**7)]
    name = "blocks.b1_l0.se.means"
    before = (level_shares(states[FRAME_COUNT]).reshape(1, -1, 1, 1, 1) * states[name]).sum(1)
    after = (level_shares(moved[FRAME_COUNT]).reshape(1, -1, 1, 1, 1) * moved[name]).sum(1)
    assert (before - after).abs().max() <= 1e-6
    assert torch.equal(moved["blocks.b1_l0.deep.buffer"], states["blocks.b1_l0.deep.buffer"])


def test_long_stream_parity_catches_a_state_defect(model):
    """A session that loses the SE means (here: the torch session fed zeroed means) is
    caught, and one that keeps them exactly is not."""
    from grw_edge.runtimes.torch import TorchSession

    session = TorchSession.for_model(model, resolution=32)
    warmup = [torch.rand(1, 8, 3, 32, 32)]
    good = long_stream_parity(model, session, warmup)
    assert good["max_abs_embeddings"] <= 1e-5 and good["top1_agreement"] == 1.0
    forget = session._set_states
    session._set_states = lambda states: forget({k: v * 0 if k.endswith("se.means") else v
                                                 for k, v in states.items()})
    bad = long_stream_parity(model, session, warmup)
    assert bad["max_abs_embeddings"] > 10 * 1e-4  # far above the float32 bar


def test_verify_runs_the_long_stream_check_by_default(artifacts):
    report = verify_artifact(artifacts["movineta1s"], clips=1, frames=6)
    assert report.long_stream["after_frames"] == [10**5, 10**6, 10**7]
    assert report.long_stream["max_abs_embeddings"] <= 1e-4 and report.failures() == []
    assert verify_artifact(artifacts["movineta1s"], clips=1, frames=6,
                           long_stream=False).long_stream is None


def test_ten_thousand_frames_through_a_float16_io_artifact(model, tmp_path):
    """Every state of a float16-I/O artifact after 10,000 frames matches the float32
    artifact's (the counter exactly), and so do the embeddings.  The float32 artifact is
    the reference here (torch would take minutes); its own agreement with torch from
    states after 10^5..10^7 frames is checked at export."""
    from grw_edge.exporters import export

    t, frames, side = 8, 10_000, 32
    sessions, manifests = {}, {}
    for name, options in (("fp32", {}), ("fp16io", {"precision": "fp16", "fp16_io": True})):
        path = export(model, "onnx", tmp_path / name, resolution=side, frames_per_step=t,
                      parity_clips=1, parity_frames=8, **options)
        manifests[name] = json.loads((path / "manifest.json").read_text())
        assert manifests[name]["parity"]["passed"]
        sessions[name] = ort.InferenceSession(str(path / "step.onnx"),
                                              providers=["CPUExecutionProvider"])
    cycle = np.random.default_rng(5).random((1, 3, 40, side, side), np.float32)
    states, results = {}, {}
    for name, session in sessions.items():
        outputs = [output.name for output in session.get_outputs()]
        entries, dtype = manifests[name]["states"], np.dtype(manifests[name]["input"]["dtype"])
        current = {s["input"]: np.zeros(s["shape"], s["dtype"]) for s in entries}
        for start in range(0, frames, t):
            feed = {"frames": cycle[:, :, start % 40:start % 40 + t].astype(dtype), **current}
            results[name] = dict(zip(outputs, session.run(None, feed)))
            current = {s["input"]: results[name][s["output"]] for s in entries}
        states[name] = {s["name"]: current[s["input"]].astype(np.float64) for s in entries}
    embeddings = {name: result["embeddings"].astype(np.float64) for name, result in results.items()}
    assert np.abs(embeddings["fp16io"] - embeddings["fp32"]).max() < 1e-2
    for state, expected in states["fp32"].items():
        got = states["fp16io"][state]
        assert np.isfinite(got).all(), state
        assert (np.abs(got - expected) <= 1e-2 * (1 + np.abs(expected))).all(), state
    assert np.array_equal(states["fp16io"][FRAME_COUNT], states["fp32"][FRAME_COUNT])
    assert states["fp32"][FRAME_COUNT].tolist() == [frame_digits(frames)]
