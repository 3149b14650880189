"""grw-edge reproduces the upstream GRW code's outputs (fixtures made by upstream, ../shared)."""
import pytest
import torch

import grw_edge
from tests.conftest import require_fixtures

TOLERANCE = 1e-4  # DESIGN.md: grw-edge PyTorch vs upstream outputs


@pytest.fixture(scope="module")
def reference():
    fixtures = require_fixtures()
    ref = torch.load(fixtures / "a0s_ref.pt", weights_only=True)
    return fixtures, ref, ref["X_uint8"].float() / 255


@pytest.mark.parametrize("ema,suffix", [(False, ""), (True, "_ema")])
def test_a0s_snapshot_reproduces_upstream_outputs(reference, ema, suffix):
    fixtures, ref, X = reference
    model = grw_edge.load_checkpoint(fixtures / "a0s_golden.pt", ema=ema)
    assert model.T == ref["T"] and model.head_config.depth == ref["depth"]
    with torch.no_grad():
        logits, Z = model(X)
    assert Z.shape == ref["Z" + suffix].shape
    assert (logits - ref["logits" + suffix]).abs().max().item() <= TOLERANCE
    assert (Z - ref["Z" + suffix]).abs().max().item() <= TOLERANCE


def test_a0s_frame_by_frame_stream_matches_upstream_whole_clip(reference):
    fixtures, ref, X = reference
    model = grw_edge.load_checkpoint(fixtures / "a0s_golden.pt")
    frames = X.permute(0, 2, 1, 3, 4)
    states, outputs = None, []
    with torch.no_grad():
        for t in range(frames.shape[2]):
            out, states = model.video_backbone.step(frames[:, :, t:t + 1], states)
            outputs.append(out)
    assert (torch.cat(outputs, 1) - ref["emb_oneshot"]).abs().max().item() <= TOLERANCE
