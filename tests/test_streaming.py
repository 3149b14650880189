"""The explicit-state step: state specs, the exportable modules and the fused window."""
import pytest
import torch

from grw_edge.errors import InputShapeError
from grw_edge.models import HeadConfig, create_model, randomize_
from grw_edge.models.fusion import fold_for_inference
from grw_edge.streaming import (
    ClassifierHead,
    FusedStreamingClassifier,
    StreamingStep,
    initial_states,
    state_specs,
    window_spec,
)

HEAD = HeadConfig(embed_dim=32, depth=1, num_heads=2, mlp_dim=64, num_classes=600)


@pytest.fixture(scope="module")
def a1s():
    return randomize_(create_model("movineta1s", head=HEAD), 4).eval()


def test_state_specs_depend_on_batch_and_resolution(a1s):
    small = state_specs(a1s.video_backbone, batch=1, resolution=48)
    large = state_specs(a1s.video_backbone, batch=2, resolution=96)
    assert [s.name for s in small] == [s.name for s in large]
    assert small[-1].name == "frame_count" and small[-1].shape == (1, 5)
    assert large[-1].shape == (2, 5)
    buffer = {s.name: s for s in large}["blocks.b0_l1.deep.buffer"]
    assert buffer.shape == (2, 2, 40, 24, 24) and buffer.dtype == "float32" and buffer.init == 0
    assert all(s.init == 0.0 for s in small)
    assert len({s.name for s in small}) == len(small)


def test_state_specs_refuse_a_base_backbone():
    with pytest.raises(InputShapeError, match="no streaming states"):
        state_specs(create_model("movineta3b", head=HEAD).video_backbone, resolution=32)


@pytest.mark.parametrize("frames_per_step", [1, 2])
def test_folded_step_module_streams_like_the_reference(a1s, frames_per_step):
    specs = state_specs(a1s.video_backbone, resolution=48, frames_per_step=frames_per_step)
    step = StreamingStep(fold_for_inference(a1s).video_backbone, specs)
    clip = torch.rand(1, 3, 6, 48, 48)
    states = initial_states(specs)
    outputs = []
    with torch.no_grad():
        for t in range(0, 6, frames_per_step):
            embeddings, *states = step(clip[:, :, t:t + frames_per_step], *states)
            outputs.append(embeddings)
        reference = a1s.video_backbone(clip.transpose(1, 2))
    assert (torch.cat(outputs, 1) - reference).abs().max() <= 1e-4
    assert states[-1].tolist() == [[6.0, 0.0, 0.0, 0.0, 0.0]]  # frame_count


def test_fused_classifier_matches_the_head_over_the_window(a1s):
    window = 4
    specs = state_specs(a1s.video_backbone, resolution=48)
    fused = FusedStreamingClassifier(StreamingStep(a1s.video_backbone, specs),
                                     ClassifierHead(a1s))
    states = initial_states([*specs, window_spec(1, window, HEAD.embed_dim)])
    clip = torch.rand(1, 3, 7, 48, 48)
    with torch.no_grad():
        for t in range(7):
            logits, _, *states = fused(clip[:, :, t:t + 1], *states)
        embeddings = a1s.video_backbone(clip.transpose(1, 2))
        expected = a1s.classify(embeddings[:, -window:])
    assert (logits - expected).abs().max() <= 1e-4
    assert states[-1].shape == (1, window, HEAD.embed_dim)


def test_folding_keeps_the_outputs(a1s):
    X = torch.rand(1, 5, 3, 48, 48)
    with torch.no_grad():
        expected = a1s(X)[0]
        folded = fold_for_inference(a1s)
        got = folded(X)[0]
    assert all(block.alpha is None for block in folded.video_backbone.encoder.blocks.values())
    assert (got - expected).abs().max() <= 1e-3
