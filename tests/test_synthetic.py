"""The synthetic yaw/pitch/roll airplane set."""
import numpy as np
import pytest

from grw_edge.data.kinetics import build_index
from grw_edge.data.synthetic import CLASSES, make_synthetic_dataset, render_rotation
from grw_edge.data.video import read_frames


@pytest.mark.parametrize("axis", CLASSES)
def test_rendering_is_deterministic_visible_and_moving(axis):
    video = render_rotation(axis, 6, 48, np.random.default_rng(3))
    again = render_rotation(axis, 6, 48, np.random.default_rng(3))
    assert video.shape == (6, 48, 48, 3) and video.dtype == np.uint8
    assert np.array_equal(video, again)
    background = np.median(video.reshape(6, -1, 3), axis=1)[:, None, None]
    covered = (np.abs(video.astype(int) - background).sum(-1) > 30).mean(axis=(1, 2))
    assert (covered > 0.02).all()  # the airplane is in every frame
    assert np.abs(np.diff(video.astype(int), axis=0)).mean() > 0.5  # and it moves


def test_roll_keeps_the_nose_where_yaw_and_pitch_move_it():
    """Turning about the nose axis leaves the nose direction fixed; the others do not."""
    from grw_edge.data.synthetic import axis_rotation

    nose = np.array([1.0, 0.0, 0.0])
    for axis, moves in ((0, False), (1, True), (2, True)):
        turned = axis_rotation(axis, 0.5) @ nose
        assert np.allclose(turned, nose) != moves


def test_dataset_layout_and_seed(tmp_path):
    summary = make_synthetic_dataset(tmp_path / "a", videos_per_class=2, frames=6, size=32)
    assert summary["splits"] == {"train": 2, "test": 2}
    index = build_index(tmp_path / "a", "train", cache_dir=tmp_path / "cache")
    assert index.classes == list(CLASSES) and len(index.videos) == 6 and not index.failed
    assert all(v["num_frames"] == 6 for v in index.videos)
    make_synthetic_dataset(tmp_path / "b", videos_per_class=2, frames=6, size=32)
    first = read_frames(tmp_path / "a" / "test" / "yaw" / "yaw_0001.mp4")
    second = read_frames(tmp_path / "b" / "test" / "yaw" / "yaw_0001.mp4")
    assert first.shape == (6, 32, 32, 3) and np.array_equal(first, second)
    train = read_frames(tmp_path / "a" / "train" / "yaw" / "yaw_0001.mp4")
    assert not np.array_equal(first, train)  # the splits share no video


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown axis 'spin'"):
        render_rotation("spin", 2, 32, np.random.default_rng(0))
    with pytest.raises(ValueError):
        make_synthetic_dataset("unused", videos_per_class=0)
