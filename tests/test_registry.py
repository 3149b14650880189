import pytest

from grw_edge.errors import UnknownBackboneError
from grw_edge.registry import get_backbone, list_backbones


def test_registered_backbones_and_evaluation_protocol():
    assert list_backbones() == ["movineta0s", "movineta1s", "movineta2s", "movineta3b"]
    expected = {  # resize, crop, frames, fps, causal, hub file (PAPER_NOTES.md)
        "movineta0s": (200, 172, 50, 5, True, "a0s_grw.pt"),
        "movineta1s": (200, 172, 50, 5, True, "a1s_grw.pt"),
        "movineta2s": (256, 224, 50, 5, True, "a2s_grw.pt"),
        "movineta3b": (300, 256, 120, 12, False, "a3b_grw.pt"),
    }
    for name, settings in expected.items():
        spec = get_backbone(name)
        assert (spec.resize, spec.resolution, spec.frames_per_clip, spec.fps, spec.causal,
                spec.hub_filename) == settings


@pytest.mark.parametrize("name,blocks,head_channels", [
    ("movineta0s", (1, 3, 3, 4, 4), 480),
    ("movineta1s", (2, 4, 5, 6, 7), 600),
    ("movineta2s", (3, 5, 5, 6, 7), 640),
    ("movineta3b", (4, 6, 5, 8, 10), 744),
])
def test_architectures_chain_their_channels(name, blocks, head_channels):
    arch = get_backbone(name).arch
    assert tuple(len(stage) for stage in arch.stages) == blocks
    assert arch.head_channels == head_channels
    channels = arch.stem_channels
    for block in (b for stage in arch.stages for b in stage):
        assert block.in_channels == channels
        assert block.kernel_size[0] in (1, 3, 5) and block.spatial_stride in (1, 2)
        channels = block.out_channels
    assert arch.last_block_channels == channels


def test_lookup_is_case_insensitive_and_unknown_names_list_the_valid_ones():
    assert get_backbone(" MoViNetA1S ").name == "movineta1s"
    with pytest.raises(UnknownBackboneError) as error:
        get_backbone("movineta5s")
    message = str(error.value)
    assert "movineta5s" in message and all(name in message for name in list_backbones())
