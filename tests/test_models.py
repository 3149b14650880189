"""Model shapes, state naming and the streaming property of the causal encoders."""
import pytest
import torch

from grw_edge.errors import InputShapeError
from grw_edge.models import FRAME_COUNT, HeadConfig, create_model, randomize_

SMALL_HEAD = HeadConfig(embed_dim=32, depth=1, num_heads=2, mlp_dim=64, num_classes=10)
CAUSAL = ["movineta0s", "movineta1s", "movineta2s"]


def small_model(name: str, seed: int = 0):
    return randomize_(create_model(name, head=SMALL_HEAD, T=3), seed).eval()


@pytest.mark.parametrize("name", CAUSAL + ["movineta3b"])
def test_forward_shapes(name):
    model = small_model(name)
    X = torch.rand(2, 6, 3, 40, 40)
    with torch.no_grad():
        logits, Z = model(X)
    assert logits.shape == (2, 10) and Z.shape == (2, 2, 3, 32)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", CAUSAL)
@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_streaming_matches_the_whole_clip(name, chunk):
    """Feeding t frames at a time from the initial state reproduces the whole-clip embeddings."""
    model = small_model(name, seed=1)
    x = torch.rand(1, 3, 7, 48, 48, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        whole, final_states = model.video_backbone.step(x)
        states, pieces = None, []
        for start in range(0, x.shape[2], chunk):
            out, states = model.video_backbone.step(x[:, :, start:start + chunk], states)
            pieces.append(out)
    streamed = torch.cat(pieces, dim=1)
    assert (streamed - whole).abs().max().item() <= 1e-4
    assert states.keys() == final_states.keys()
    assert states[FRAME_COUNT].tolist() == [[7.0, 0.0, 0.0, 0.0, 0.0]]


def test_state_names_follow_module_paths():
    model = small_model("movineta0s")
    with torch.no_grad():
        _, states = model.video_backbone.step(torch.rand(2, 3, 1, 48, 48))
    # A0's first block has a (1, 5, 5) kernel: no temporal buffer, but SE level means.
    assert "blocks.b0_l0.deep.buffer" not in states
    # Frames-first layouts: buffers (B, k_t - 1, C, H, W), SE level means (B, L, C, 1, 1).
    assert states["blocks.b0_l0.se.means"].shape == (2, 5, 24, 1, 1)
    assert states["blocks.b1_l0.deep.buffer"].shape == (2, 2, 80, 6, 6)  # after its stride 2
    assert states["blocks.b2_l0.deep.buffer"].shape[1] == 4  # k_t = 5
    assert states[FRAME_COUNT].shape == (2, 5)
    buffers = [name for name in states if name.endswith("deep.buffer")]
    sums = [name for name in states if name.endswith("se.means")]
    assert len(sums) == 15 and len(buffers) == 11 and len(states) == 27


@pytest.mark.parametrize("name,causal", [("movineta1s", True), ("movineta3b", False)])
def test_only_base_backbones_see_the_future(name, causal):
    model = small_model(name)
    x = torch.rand(1, 3, 5, 32, 32)
    with torch.no_grad():
        full, states = model.video_backbone.step(x)
        prefix, _ = model.video_backbone.step(x[:, :, :3])
    difference = (full[:, :3] - prefix).abs().max()
    if causal:
        assert difference <= 1e-4
    else:
        assert states == {} and difference > 1e-3  # later frames change earlier embeddings


def test_head_accepts_any_number_of_frames():
    model = small_model("movineta0s")
    with torch.no_grad():
        for n in (1, 4, 9):
            assert model.classify(torch.randn(2, n, 32)).shape == (2, 10)


def test_bad_inputs_get_clear_errors():
    model = small_model("movineta0s")
    with pytest.raises(InputShapeError, match="multiple of T=3"):
        model(torch.rand(1, 4, 3, 32, 32))
    with pytest.raises(InputShapeError, match=r"\(B, N, 3, H, W\)"):
        model(torch.rand(1, 3, 4, 32, 32))
    with pytest.raises(InputShapeError, match=r"\(B, 3, T, H, W\)"):
        model.video_backbone.step(torch.rand(1, 4, 3, 32, 32))


def test_fresh_model_trains():
    model = create_model("movineta0s", head=SMALL_HEAD, T=3, max_drop_path_rate=0.1)
    logits, Z = model(torch.rand(2, 3, 3, 32, 32))
    logits.sum().backward()
    assert model.ln.weight.grad is not None
    assert all(block.alpha.item() == 0.0 for block in model.video_backbone.encoder.blocks.values())


@pytest.mark.parametrize("side", [7, 8, 22, 43])
@pytest.mark.parametrize("channels_last", [False, True])
def test_tf_average_pool_counts_only_real_pixels(side, channels_last):
    """TF 'SAME' 3x3/2 pooling: each output is the mean of the real pixels under its window
    (brute force here), in both layouts."""
    from grw_edge.models.layers import TfAvgPool, same_padding_amounts

    x = torch.randn(2, 4, side, side)
    before, _ = same_padding_amounts(side, 3, 2)
    out = (side + 1) // 2
    expected = torch.empty(2, 4, out, out)
    for i in range(out):
        for j in range(out):
            rows = slice(max(2 * i - before, 0), min(2 * i - before + 3, side))
            cols = slice(max(2 * j - before, 0), min(2 * j - before + 3, side))
            expected[:, :, i, j] = x[:, :, rows, cols].mean(dim=(2, 3))
    pool = TfAvgPool()
    pool.channels_last = channels_last
    got = (pool(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) if channels_last else pool(x))
    assert (got - expected).abs().max() <= 1e-6
