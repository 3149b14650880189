"""Decoding, the upstream frame selection, the evaluation transform and the folder index."""
import json
import math
import subprocess
import sys

import av
import numpy as np
import pytest
import torch
import torchvision.transforms as T

from grw_edge.data.kinetics import VideoClipDataset, build_index
from grw_edge.data.video import (
    VideoDecodeError,
    clip_indices,
    probe_video,
    read_frames,
    resample,
    resample_indices,
    upright,
    write_video,
)
from grw_edge.preprocess import preprocess_frames
from tests.video_files import (
    ON_SCREEN,
    VFR_TIMES,
    frame_numbers,
    garble_payload,
    numbered_frames,
    write,
)


def torchvision_resample(num_frames: int, original_fps: float, new_fps: float):
    """torchvision 0.17 ``VideoClips`` frame selection, restated with torch as it was."""
    total = int(math.floor(num_frames * new_fps / original_fps))
    step = original_fps / new_fps
    if float(step).is_integer():
        return torch.arange(num_frames)[slice(None, None, int(step))]
    return (torch.arange(total, dtype=torch.float32) * step).floor().to(torch.int64)


@pytest.mark.parametrize("fps", [29.97, 25.0, 30.0, 12.0])
@pytest.mark.parametrize("target", [5.0, 12.0])
def test_resampling_matches_the_upstream_rule(fps, target):
    for count in (0, 7, 150, 301):
        expected = torchvision_resample(count, fps, target).numpy()
        assert np.array_equal(resample_indices(count, fps, target), expected)


@pytest.mark.parametrize("fps,expected_step,expected_clips", [(29.97, 29.97 / 5, 2),
                                                               (25.0, 5.0, 3)])
def test_decoded_clips_hold_the_selected_frames(tmp_path, fps, expected_step, expected_clips):
    path = write_video(tmp_path / "numbers.mp4", numbered_frames(70, 48, 64), fps)
    info = probe_video(path)
    assert info.num_frames == 70 and info.fps == pytest.approx(fps, rel=1e-3)
    assert (info.width, info.height) == (64, 48)
    clips = clip_indices(info.num_frames, info.fps, 5.0, 4)
    kept = resample_indices(70, info.fps, 5.0)
    assert len(clips) == len(kept) // 4 == expected_clips
    assert kept[1] == math.floor(expected_step)
    for clip in clips:
        assert frame_numbers(read_frames(path, clip)) == list(clip)


def test_short_videos_give_no_clip_and_rotation_is_undone():
    assert clip_indices(20, 25.0, 5.0, 50) == []
    image = np.arange(6).reshape(2, 3, 1).repeat(3, axis=2).astype(np.uint8)
    assert upright(image, -90).shape == (3, 2, 3)
    assert np.array_equal(upright(upright(image, 90), -90), image)
    assert upright(image, 0) is image


def test_transform_equals_torchvision(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (3, 90, 120, 3), dtype=np.uint8)
    ours = preprocess_frames(frames, resize=200, crop=172)
    upstream = T.Compose([lambda v: v.to(torch.float32) / 255, T.Resize((200, 200)),
                          T.CenterCrop(172)])
    reference = upstream(torch.from_numpy(frames).permute(0, 3, 1, 2))
    assert ours.shape == (3, 3, 172, 172)
    assert torch.allclose(ours, reference, atol=1e-6)


def test_unreadable_files_are_errors_not_crashes(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00not a video" * 50)
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        probe_video(broken)
    with pytest.raises(VideoDecodeError):
        read_frames(broken)


def make_folder(root, counts=(("b_class", 2), ("a_class", 1)), frames=30, fps=25.0):
    for name, videos in counts:
        for i in range(videos):
            write_video(root / "test" / name / f"{i}.mp4", numbered_frames(frames, 32, 32), fps)
    return root


def test_folder_index_labels_skips_and_cache(tmp_path):
    root = make_folder(tmp_path / "data")
    (root / "test" / "a_class" / "corrupt.mp4").write_bytes(b"garbage" * 100)
    cache = tmp_path / "cache"
    index = build_index(root, "test", cache_dir=cache)
    assert index.classes == ["a_class", "b_class"]
    assert sorted((v["path"], v["label"]) for v in index.videos) == [
        ("a_class/0.mp4", 0), ("b_class/0.mp4", 1), ("b_class/1.mp4", 1)]
    assert [f["path"] for f in index.failed] == ["a_class/corrupt.mp4"]
    cached = json.loads(next(cache.iterdir()).read_text())
    assert len(cached["index"]["videos"]) == 3

    write_video(root / "test" / "a_class" / "1.mp4", numbered_frames(10, 32, 32), 25.0)
    rebuilt = build_index(root, "test", cache_dir=cache)  # the folder changed
    assert len(rebuilt.videos) == 4

    dataset = VideoClipDataset(root, "test", frames_per_clip=3, fps=5.0, resize=36, crop=32,
                               cache_dir=cache)
    assert dataset.too_short == ["a_class/1.mp4"]  # 10 frames at 25 fps -> 2 at 5 fps
    assert len(dataset) == 3 * 2  # 30 frames -> 6 at 5 fps -> 2 clips per video
    item = dataset[0]
    assert item["frames"].shape == (3, 3, 32, 32) and item["ok"] and item["label"] == 0


def test_chosen_frames_are_decoded_from_the_keyframe_before_them(tmp_path):
    """A stream with a keyframe every 10 frames and B-frames: frames picked after seeking to
    the keyframe before them are exactly those a decode from the first frame gives."""
    path = write(tmp_path / "gop.mp4", 45, fps=30,
                 options={"g": "10", "keyint_min": "10", "bf": "2"})
    everything = read_frames(path)
    for indices in ([0, 3, 6], [21, 27, 33], [44], [40, 12, 25]):
        assert np.array_equal(read_frames(path, indices, threads=1), everything[indices])
    assert frame_numbers(read_frames(path, [21, 27, 33])) == [21, 27, 33]


def test_raw_clips_transformed_where_the_model_is_equal_the_loader_transform(tmp_path):
    from grw_edge.data.kinetics import collate_clips, device_clips

    for label in ("a", "b"):
        write_video(tmp_path / "train" / label / "v.mp4", numbered_frames(12, 40, 56), 10.0)
    options = dict(frames_per_clip=4, fps=10, resize=36, crop=32, cache_dir=tmp_path / "cache")
    transformed = VideoClipDataset(tmp_path, "train", **options)
    raw = VideoClipDataset(tmp_path, "train", raw=True, **options)
    items = [raw[i] for i in range(len(raw))]
    assert items[0]["frames"].dtype == torch.uint8 and items[0]["frames"].shape == (4, 40, 56, 3)
    batch = collate_clips(items)
    expected = collate_clips([transformed[i] for i in range(len(transformed))])
    assert torch.equal(batch["label"], expected["label"])
    assert torch.equal(device_clips(batch["frames"], torch.device("cpu"), resize=36, crop=32),
                       expected["frames"])


GOP = {"g": "10", "bf": "2"}  # a keyframe every 10 frames, B-frames between
CONTAINERS = {  # name: (suffix, codec, container options)
    "mp4-h264": (".mp4", "libx264", {"options": GOP}),
    "mkv-h264": (".mkv", "libx264", {"options": GOP}),
    "mov-mjpeg": (".mov", "mjpeg", {}),
    "webm-vp9": (".webm", "libvpx-vp9", {"options": {"g": "10"}}),
    "avi-mpeg4-bframes": (".avi", "mpeg4", {"options": {"g": "10"}, "b_frames": 2}),
    "avi-h264": (".avi", "libx264", {"options": GOP}),
    "ts-h264": (".ts", "libx264", {"container": "mpegts", "options": GOP}),
    "flv": (".flv", "flv", {"options": {"g": "10"}}),
}


@pytest.mark.parametrize("name", sorted(CONTAINERS))
def test_chosen_frames_equal_a_full_decode_in_every_container(tmp_path, name):
    suffix, codec, options = CONTAINERS[name]
    path = write(tmp_path / f"v{suffix}", 45, codec=codec, **options)
    everything = read_frames(path)
    assert frame_numbers(everything) == list(range(45))
    assert probe_video(path).num_frames == 45
    for indices in ([0, 3, 6], [21, 27, 33], [40, 41, 42, 43, 44], [35, 12, 25]):
        chosen = read_frames(path, indices, threads=1)
        assert frame_numbers(chosen) == indices
        assert np.array_equal(chosen, everything[indices])


def test_a_raw_h264_stream_named_mp4_probes_and_decodes_its_frames(tmp_path):
    path = write(tmp_path / "raw.mp4", 30, container="h264")
    assert probe_video(path).num_frames == 30
    assert frame_numbers(read_frames(path, [5, 17, 29])) == [5, 17, 29]


def test_a_truncated_mp4_probes_what_it_decodes(tmp_path):
    path = write(tmp_path / "cut.mp4", 60, options={"g": "5"}, muxer={"movflags": "faststart"},
                 size=64)
    path.write_bytes(path.read_bytes()[:int(path.stat().st_size * 0.7)])
    probed, decoded = probe_video(path).num_frames, read_frames(path)
    assert 0 < probed < 60 and len(decoded) == probed
    numbers = frame_numbers(decoded)
    assert numbers == sorted(numbers) and numbers[0] == 0
    assert np.array_equal(read_frames(path, [probed - 1, 1]), decoded[[probed - 1, 1]])


def test_a_download_cut_before_its_first_frame_is_refused(tmp_path):
    """Its index is whole, its frames' bytes are not: unreadable, not a 0-frame video."""
    path = write(tmp_path / "cut.mp4", 20, muxer={"movflags": "faststart"}, size=64)
    with av.open(str(path)) as container:
        first = next(p for p in container.demux(video=0) if p.size).pos
    path.write_bytes(path.read_bytes()[:first + 1])
    with pytest.raises(VideoDecodeError, match="holds no frames"):
        probe_video(path)


def test_a_seek_reaches_the_last_frame_of_a_faststart_mp4(tmp_path, monkeypatch):
    """The last packet ends at the end of such a file: after a seek that is no sign of a cut
    (the chosen frames come from the seek, not from a decode from the start)."""
    from grw_edge.data import video

    path = write(tmp_path / "fast.mp4", 40, options={"g": "5"}, muxer={"movflags": "faststart"})
    everything = read_frames(path)
    monkeypatch.setattr(video, "_from_start", lambda *args: pytest.fail("decoded from start"))
    assert np.array_equal(read_frames(path, [35, 39]), everything[[35, 39]])


def test_a_corrupt_packet_loses_its_frame_only(tmp_path, caplog):
    path = write(tmp_path / "intra.mov", 30, codec="mjpeg")
    garble_payload(path, packets=[12])
    everything = read_frames(path)
    assert frame_numbers(everything) == [i for i in range(30) if i != 12]
    assert "1 packet(s) did not decode" in caplog.text
    assert frame_numbers(read_frames(path, [11, 13, 29])) == [11, 13, 29]
    with pytest.raises(VideoDecodeError, match="no frame 12 .*1 corrupt packet"):
        read_frames(path, [12])
    missing = []  # a player's view: the frame is left out and named
    assert frame_numbers(read_frames(path, [11, 12, 13], missing=missing)) == [11, 13]
    assert missing == [12]


def test_frames_resized_as_they_decode_equal_the_whole_clip_transform(tmp_path):
    """The per-frame transform (memory bounded by the model's input) is the clip transform."""
    from functools import partial

    path = write_video(tmp_path / "v.mp4", numbered_frames(12, 96, 128), 10.0)
    indices = [1, 5, 9]
    per_frame = read_frames(path, indices, stack=torch.stack,
                            transform=partial(preprocess_frames, resize=36, crop=32))
    assert torch.equal(per_frame, preprocess_frames(read_frames(path, indices), resize=36,
                                                    crop=32))


def test_raw_clips_of_large_sources_are_transformed_on_the_worker(tmp_path):
    from grw_edge.data.kinetics import collate_clips, device_clips

    write_video(tmp_path / "train" / "a" / "small.mp4", numbered_frames(8, 32, 32), 10.0)
    write_video(tmp_path / "train" / "a" / "large.mp4", numbered_frames(8, 96, 128), 10.0)
    options = dict(frames_per_clip=4, fps=10, resize=36, crop=32, cache_dir=tmp_path / "c")
    raw = VideoClipDataset(tmp_path, "train", raw=True, **options)
    plain = VideoClipDataset(tmp_path, "train", **options)
    items = [raw[i] for i in range(len(raw))]
    kinds = {raw.clip_path(item["clip"]): item["frames"].dtype for item in items}
    assert kinds == {"a/small.mp4": torch.uint8, "a/large.mp4": torch.float32}
    batch = device_clips(collate_clips(items)["frames"], torch.device("cpu"), resize=36, crop=32)
    assert torch.equal(batch, torch.stack([plain[i]["frames"] for i in range(len(plain))]))


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_variable_frame_rate_is_sampled_by_presentation_time(tmp_path, suffix):
    path = write(tmp_path / "train" / "a" / f"vfr{suffix}", len(VFR_TIMES), times=VFR_TIMES)
    info = probe_video(path)
    assert info.times == pytest.approx(VFR_TIMES)
    by_time = resample(info.num_frames, info.fps, 10.0, sampling="time", times=info.times)
    assert by_time.tolist() == ON_SCREEN
    assert frame_numbers(read_frames(path, by_time)) == ON_SCREEN
    assert np.array_equal(resample(info.num_frames, info.fps, 10.0, times=info.times),
                          resample_indices(info.num_frames, info.fps, 10.0))  # the default
    dataset = VideoClipDataset(tmp_path, "train", frames_per_clip=5, fps=10.0, resize=32,
                               crop=32, raw=True, sampling="time", cache_dir=tmp_path / "c")
    assert [frame_numbers(dataset[i]["frames"].numpy()) for i in range(len(dataset))] == [
        ON_SCREEN[:5], ON_SCREEN[5:]]


def test_constant_frame_rate_by_time_is_the_index_rule(tmp_path):
    info = probe_video(write(tmp_path / "cfr.mkv", 30, fps=25))
    assert info.times is None  # evenly spaced to within the millisecond time base
    for target in (5.0, 25.0, None):
        assert np.array_equal(resample(30, info.fps, target, sampling="time"),
                              resample_indices(30, info.fps, target))


def test_decoding_and_the_command_line_import_no_torch():
    """Probing and decoding (and the CLI's startup) stay light: torch loads only when used."""
    code = ("import sys, grw_edge, grw_edge.data.video, grw_edge.data.failures, grw_edge.cli; "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"
