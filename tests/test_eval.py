"""grw-edge eval and predict on generated video folders, in one process and under torchrun."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from grw_edge.cli import cli
from grw_edge.data.video import write_video
from grw_edge.exporters import export
from grw_edge.models import HeadConfig, create_model, randomize_
from tests.video_files import ON_SCREEN, VFR_TIMES, garble_payload, write

HEAD = HeadConfig(embed_dim=64, depth=1, num_heads=2, mlp_dim=128, num_classes=600)
CLIP = ["--frames", "4", "--fps", "10"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two Kinetics classes, two noise videos each at 25 fps, and one corrupt file."""
    root = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    for name in ("abseiling", "air drumming"):
        for i in range(2):
            frames = rng.integers(0, 256, (20, 56, 64, 3), dtype=np.uint8)
            write_video(root / "test" / name / f"{i}.mp4", frames, 25.0)
    (root / "test" / "abseiling" / "corrupt.mp4").write_bytes(b"not a video" * 64)
    return root


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    model = randomize_(create_model("movineta0s", head=HEAD), 7).eval()
    return export(model, "onnx", tmp_path_factory.mktemp("art") / "a0s", resolution=48,
                  parity_frames=4)


def run(*args: str, env: dict | None = None):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False,
                                env={"GRW_EDGE_CACHE": env["cache"]} if env else None)
    return result


def test_compare_reports_full_agreement_and_lists_the_corrupt_file(folder, artifact, tmp_path):
    result = run("eval", "--data", str(folder), "--artifact", str(artifact), "--compare",
                 *CLIP, "--json", env={"cache": str(tmp_path)})
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["clips"] == 8  # 20 frames -> 8 at 10 fps
    assert [f["path"] for f in report["unreadable"]] == ["abseiling/corrupt.mp4"]
    assert report["agreement"]["top1_agreement"] == 1.0
    assert report["agreement"]["max_abs_logits"] <= 1e-3
    scores = report["scores"]
    assert scores["pytorch"]["top1"] == scores["onnxruntime"]["top1"]
    assert abs(scores["pytorch"]["loss"] - scores["onnxruntime"]["loss"]) <= 1e-4


def torchrun_eval(folder, artifact, cache, processes: int) -> dict:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={processes}", "-m", "grw_edge.cli", "eval", "--data",
               str(folder), "--artifact", str(artifact), "--compare", *CLIP, "--batch-size", "1",
               "--json"]
    env = {**os.environ, "GRW_EDGE_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def test_two_gloo_processes_give_the_numbers_of_one(folder, artifact, tmp_path):
    one = torchrun_eval(folder, artifact, tmp_path, 1)
    two = torchrun_eval(folder, artifact, tmp_path, 2)
    assert one["clips"] == two["clips"] == 8
    for name in ("pytorch", "onnxruntime"):
        for key in ("top1", "top5"):
            assert one["scores"][name][key] == two["scores"][name][key]
        assert one["scores"][name]["loss"] == pytest.approx(two["scores"][name]["loss"], abs=1e-6)
    assert one["agreement"] == two["agreement"]


def test_predict_top5_and_stream(folder, artifact):
    video = str(folder / "test" / "abseiling" / "0.mp4")
    result = run("predict", video, "--artifact", str(artifact), *CLIP)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 0 and len(lines) == 6 and "4 frames at 10 fps" in lines[0]
    probabilities = [float(line.split()[0]) for line in lines[1:]]
    assert probabilities == sorted(probabilities, reverse=True)
    stream = run("predict", video, "--artifact", str(artifact), "--stream", *CLIP)
    frames = stream.output.strip().splitlines()
    assert stream.exit_code == 0 and len(frames) == 4 and "frame    4" in frames[-1]


def _stream_lines(output: str) -> dict[str, list[str]]:
    """Multi-video --stream output -> each video's lines, its name taken off."""
    lines: dict[str, list[str]] = {}
    for line in output.strip().splitlines():
        video, rest = line.split("  ", 1)
        lines.setdefault(video, []).append(rest)
    return lines


def test_several_videos_stream_at_once_as_each_alone(folder, tmp_path):
    """Three videos on two slots of the PyTorch model (the third joins when one ends) and
    on a batch-1 artifact (one after another): each video's lines are its lines alone; an
    unreadable video is named and the others go on."""
    videos = [str(folder / "test" / name / f"{i}.mp4")
              for name, i in (("abseiling", 0), ("abseiling", 1), ("air drumming", 0))]
    videos.append(str(write(tmp_path / "long.mp4", 40, fps=25)))  # 16 frames at 10 fps
    model = ["--backbone", "movineta0s", "--random-init", "--resolution", "32", "--frames", "16",
             "--fps", "10"]
    alone = {video: run("predict", video, *model, "--stream").output.splitlines()[1:]
             for video in videos}
    together = run("predict", *videos, *model, "--stream", "--slots", "2")
    assert together.exit_code == 0, together.output
    lines = together.output.splitlines()
    assert lines[0] == "weights: movineta0s, random init"
    got = _stream_lines("\n".join(lines[1:]))
    assert sorted(got) == sorted(videos)
    for video in videos:
        mine = [line.split() for line in got[video]]
        theirs = [line.split() for line in alone[video]]
        assert [m[:-1] for m in mine] == [t[:-1] for t in theirs]  # times, frames, labels
        assert np.allclose([float(m[-1]) for m in mine], [float(t[-1]) for t in theirs],
                           atol=2e-3)
    first_lines = [line.split("  ")[0] for line in lines[1:7]]
    assert first_lines == [videos[0], videos[1]] * 3  # two at once, one step per tick
    broken = run("predict", videos[0], str(folder / "test" / "abseiling" / "corrupt.mp4"),
                 videos[2], *model, "--stream")
    assert broken.exit_code == 1
    assert "corrupt.mp4: cannot read" in broken.output
    assert "1 of 3 video(s) could not be streamed" in broken.output
    assert len(_stream_lines("\n".join(line for line in broken.output.splitlines()[1:]
                                         if line.startswith(tuple(videos))))) == 2
    clips = run("predict", videos[0], str(folder / "test" / "abseiling" / "corrupt.mp4"),
                videos[2], *model)
    assert clips.exit_code == 1 and "1 of 3 video(s) could not be classified" in clips.output
    assert [line.split(":")[0] for line in clips.output.splitlines()
            if line.endswith("fps")] == [videos[0], videos[2]]
    refused = run("predict", videos[0], "--artifact", str(tmp_path), "--slots", "2", "--stream")
    assert refused.exit_code == 1 and "--slots is for --stream with the PyTorch model" in \
        refused.output


def test_predict_stream_prints_presentation_times(artifact, tmp_path):
    video = str(write(tmp_path / "vfr.mkv", len(VFR_TIMES), times=VFR_TIMES))
    for sampling, chosen in (("time", ON_SCREEN), ("index", [0, 2, 5, 7])):
        result = run("predict", video, "--artifact", str(artifact), "--stream", "--frames",
                     "10", "--fps", "10", "--sampling", sampling)
        assert result.exit_code == 0, result.output
        seconds = [float(line.split()[0].rstrip("s")) for line in result.output.splitlines()]
        assert seconds == pytest.approx([VFR_TIMES[i] for i in chosen], abs=0.005)


def test_predict_shows_the_frames_a_corrupt_packet_lost(artifact, tmp_path):
    video = str(garble_payload(write(tmp_path / "intra.mov", 20, fps=10, codec="mjpeg"),
                               packets=[5]))
    clip = ["--artifact", str(artifact), "--frames", "10", "--fps", "10"]
    result = run("predict", video, *clip)
    assert result.exit_code == 0, result.output
    assert ("9 frames at 10 fps (1 lost: the frames at 0.50s did not decode)"
            in result.output.splitlines()[0])
    stream = run("predict", video, *clip, "--stream")
    assert stream.exit_code == 0, stream.output
    seconds = [line.split()[0] for line in stream.output.splitlines()]
    assert seconds == [f"{t / 10:.2f}s" for t in range(10)]
    assert stream.output.splitlines()[5] == "   0.50s  lost: the frame did not decode (skipped)"


def test_long_stream_reports_unusable_files_and_scores_the_rest(artifact, tmp_path):
    """A file with no timestamps (raw H.264) plays at its nominal rate; one that probes but
    does not decode, and one that is no video, are named with their reasons."""
    folder = tmp_path / "test" / "abseiling"
    for name in ("a.mp4", "b.mkv"):
        write(folder / name, 20, fps=25)
    write(folder / "raw.mp4", 20, fps=25, container="h264")
    garble_payload(write(folder / "noise.mp4", 20, fps=25))
    (folder / "text.mp4").write_text("not a video\n" * 20)
    args = ["eval", "--data", str(tmp_path), "--artifact", str(artifact), "--long-stream",
            "--policies", "cumulative", *CLIP]
    table = run(*args, "--report-file", str(tmp_path / "report.json"),
                env={"cache": str(tmp_path / "cache")})
    assert table.exit_code == 0, table.output
    assert "3 videos as one stream of 24 frames" in table.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["videos"] == 3 and report["frames"] == 3 * 8
    reasons = {f["path"]: f["reason"] for f in report["unreadable"]}
    assert sorted(reasons) == ["abseiling/noise.mp4", "abseiling/text.mp4"]
    assert "20 corrupt packet(s) skipped" in reasons["abseiling/noise.mp4"]
    assert "Invalid data" in reasons["abseiling/text.mp4"]
    for path, reason in reasons.items():
        assert f"unreadable: {path}: {reason}" in table.output
    assert 0 <= report["scores"][0]["every_frame"] <= 1


def test_eval_errors_are_one_line(folder, tmp_path):
    missing = run("eval", "--data", str(tmp_path / "nowhere"), "--backbone", "movineta0s",
                  "--random-init", "--resolution", "32", *CLIP, env={"cache": str(tmp_path)})
    assert missing.exit_code == 1 and "no split folder" in missing.output
    assert len(missing.output.strip().splitlines()) == 1
    too_long = run("eval", "--data", str(folder), "--backbone", "movineta0s", "--random-init",
                   "--resolution", "32", "--frames", "500", env={"cache": str(tmp_path)})
    assert too_long.exit_code == 1 and "no clips of 500 frames" in too_long.output


def test_compare_on_the_synthetic_set(artifact, tmp_path):
    from grw_edge.data.synthetic import make_synthetic_dataset

    make_synthetic_dataset(tmp_path / "synthetic", videos_per_class=2, frames=8, size=32)
    result = run("eval", "--data", str(tmp_path / "synthetic"), "--artifact", str(artifact),
                 "--compare", *CLIP, "--json", env={"cache": str(tmp_path)})
    report = json.loads(result.output)
    assert report["clips"] == 12  # test split: 2 videos x 3 classes x two 4-frame clips
    assert report["agreement"]["top1_agreement"] == 1.0


def test_verify_on_real_videos_skips_the_corrupt_one(folder, artifact):
    from grw_edge.verify import verify_artifact

    report = verify_artifact(artifact, videos=folder, frames=4)
    assert report.clips == 4 and report.failures() == []
    assert [p.endswith("corrupt.mp4") for p in report.skipped] == [True]


def test_a_folder_of_unreadable_videos_lists_them(tmp_path):
    for name in ("a", "b"):
        (tmp_path / "test" / name).mkdir(parents=True)
        (tmp_path / "test" / name / "broken.mp4").write_bytes(b"not a video" * 64)
    result = run("eval", "--data", str(tmp_path), "--backbone", "movineta0s", "--random-init",
                 "--resolution", "32", *CLIP, env={"cache": str(tmp_path / "cache")})
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1
    assert "2 unreadable: a/broken.mp4, b/broken.mp4" in lines[0]


def test_long_stream_scores_each_policy(folder, artifact, tmp_path):
    result = run("eval", "--data", str(folder), "--artifact", str(artifact), "--long-stream",
                 "--policies", "cumulative,reset-every-6", "--repeat", "2", *CLIP, "--json",
                 env={"cache": str(tmp_path)})
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["videos"] == 8 and report["frames"] == 8 * 8 and report["window"] == 4
    assert [f["path"] for f in report["unreadable"]] == ["abseiling/corrupt.mp4"]
    cumulative, reset = report["scores"]
    assert (cumulative["policy"], reset["policy"]) == ("cumulative", "reset-every-6")
    assert (cumulative["steps_per_frame"], reset["steps_per_frame"]) == (1, 2)
    for scores in (cumulative, reset):
        assert 0 <= scores["after_boundary"] <= 1 and len(scores["by_segment"]) == 4


def test_the_report_accounts_for_every_file(artifact, tmp_path):
    """Used (mp4, flv, ts), too short, unreadable with its reason, clips that failed (a
    probed file whose packets are noise), not a video, and a dangling link: each named."""
    folder = tmp_path / "test" / "abseiling"
    write(folder / "good.mp4", 20, fps=25)
    write(folder / "flash.flv", 20, fps=25, codec="flv")
    write(folder / "broadcast.ts", 20, fps=25, container="mpegts")
    write(folder / "short.mp4", 4, fps=25)
    garble_payload(write(folder / "noise.mp4", 20, fps=25))
    (folder / "text.mp4").write_text("not a video\n" * 20)
    (folder / "notes.txt").write_text("hello")
    (folder / "gone.mkv").symlink_to(tmp_path / "missing.mkv")
    args = ["eval", "--data", str(tmp_path), "--artifact", str(artifact), *CLIP,
            "--report-file", str(tmp_path / "report.json")]
    strict = run(*args, env={"cache": str(tmp_path / "cache")})
    assert strict.exit_code == 1  # 2 of 8 clips failed: over the default 1%
    assert "noise.mp4" in strict.output.strip().splitlines()[-1]
    table = run(*args, "--max-failed-clips", "0.5", env={"cache": str(tmp_path / "cache")})
    assert table.exit_code == 0, table.output
    assert "3 used, 1 shorter than one clip, 2 unreadable, 1 with 2 clip(s)" in table.output
    assert "not a video suffix: abseiling/notes.txt" in table.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["clips"] == 6 and report["selected"] == 8
    assert report["used"] == ["abseiling/broadcast.ts", "abseiling/flash.flv",
                              "abseiling/good.mp4"]
    assert report["too_short"] == ["abseiling/short.mp4"]
    reasons = {f["path"]: f["reason"] for f in report["unreadable"]}
    assert sorted(reasons) == ["abseiling/gone.mkv", "abseiling/text.mp4"]
    assert "dangling symlink" in reasons["abseiling/gone.mkv"]
    assert "Invalid data" in reasons["abseiling/text.mp4"]
    assert [f["path"] for f in report["failed_clips"]] == ["abseiling/noise.mp4"] * 2
    assert all("Invalid data" in f["reason"] or "decoded no frames" in f["reason"]
               or "no frame" in f["reason"] for f in report["failed_clips"])
    assert report["unsupported"] == ["abseiling/notes.txt"]
