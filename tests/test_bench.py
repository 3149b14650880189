"""grw-edge bench: FLOPs counts, the JSON schema, plots, and skipped backends."""
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from grw_edge.benchmarks.bench import (
    backend_unavailable,
    latency_rows,
    report_text,
    rows_to_time,
    run_bench,
    run_worker,
    write_plots,
)
from grw_edge.benchmarks.flops import UPSTREAM_FVCORE_GFLOPS, _count, count_flops
from grw_edge.cli import cli
from grw_edge.exporters import export
from grw_edge.models import create_model, randomize_


def test_toy_convolution_matches_a_hand_count():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    gflops, skipped = _count(conv, (torch.zeros(1, 3, 16, 16),))
    assert gflops * 1e9 == 8 * 3 * 3 * 3 * 16 * 16 and skipped == {}


def test_a0s_at_the_paper_setting_matches_upstream_fvcore():
    """Temporal convolutions are added to fvcore's count and the attention is counted from
    its matrix products, as upstream's count (convolutions, batch norm, attention by hand)
    has them."""
    counts = count_flops(create_model("movineta0s").eval(), 50, 172)
    assert counts.total_gflops == pytest.approx(UPSTREAM_FVCORE_GFLOPS["movineta0s"], rel=5e-3)
    assert not {op for op in counts.skipped if "attention" in op or "matmul" in op}


# made by benchmarks/build_tflite_movinet.py tiny: an image and a state in, both out
TINY_TFLITE = Path(__file__).parent / "data" / "tiny_stream.tflite"


@pytest.fixture(scope="module")
def results():
    return run_bench(["movineta0s"], ["torch", "onnxruntime", "runtime", "litert", "tensorrt",
                                      "coreml"],
                     threads=1, repeats=5, resolution=32, tflite=[TINY_TFLITE])


def test_results_schema_and_skipped_backends(results):
    assert results["schema_version"] == 1 and results["threads"] == 1
    entry = results["backbones"]["movineta0s"]
    assert entry["resolution"] == 32 and entry["frames"] == 50 and not entry["paper_setting"]
    assert entry["state_tensors"] == 27 and entry["state_bytes"] > 0
    for backend in ("torch", "onnxruntime", "runtime", "litert"):
        result = entry["backends"][backend]
        assert result["status"] == "ok", result
        assert result["step"]["median_ms"] > 0 and result["clip"]["median_ms"] > 0
        assert result["raw_step"]["median_ms"] > 0 and result["import_open_s"] > 0
        assert result["peak_rss_mb"] > 0 and result["threads"] == 1
    assert entry["backends"]["runtime"]["modules"] == []  # neither torch nor the toolkit
    assert entry["backends"]["litert"]["modules"] == []
    assert entry["backends"]["litert"]["backend"] == "litert"
    # the toolkit's own path: its lazy imports leave torch out of an onnxruntime session
    assert entry["backends"]["onnxruntime"]["modules"] == ["grw_edge"]
    for backend in ("tensorrt", "coreml"):
        skipped = entry["backends"][backend]
        assert skipped["status"] == "skipped" and skipped["reason"]
    json.dumps(results)


def test_a_tflite_streaming_model_is_timed_with_litert_or_skipped_with_the_reason(results):
    peer = results["tflite"][str(TINY_TFLITE)]
    reason = backend_unavailable("tflite")
    if reason:
        assert peer["status"] == "skipped" and peer["reason"] == reason
    else:
        assert peer["status"] == "ok", peer
        assert peer["states"] == 1 and peer["state_bytes"] == 12
        assert peer["modules"] == []  # LiteRT and numpy alone, like the runtime's rows
        assert 0 < peer["step"]["median_ms"] < 50 and peer["threads"] == 1
    assert "tiny_stream.tflite" in report_text(results)


def test_plots_are_written(results, tmp_path):
    for path in write_plots(results, tmp_path):
        with Image.open(path) as image:
            assert image.size[0] > 400 and len(image.getcolors(1 << 16) or [0, 0]) > 1


def test_cli_unknown_backbone_is_one_line():
    result = CliRunner().invoke(cli, ["bench", "--backbones", "movineta9"])
    assert result.exit_code == 1 and "unknown backbone" in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the rows skipped without a GPU")
def test_cuda_rows_are_skipped_with_the_reason_without_a_gpu():
    from grw_edge.benchmarks.bench import CUDA_BACKENDS, backend_unavailable

    for backend in CUDA_BACKENDS:
        assert backend_unavailable(backend, "cuda") == "no CUDA GPU is visible on this machine"
    assert backend_unavailable("torch-cudagraphs", "cpu") == "CUDA graphs need --device cuda"
    result = CliRunner().invoke(cli, ["bench", "--backbones", "movineta0s", "--device", "cuda",
                                      "--resolution", "32", "--repeats", "5",
                                      "--precision", "fp32,fp16,bf16"])
    assert result.exit_code == 0, result.output
    # eager, session and graph replay once per precision; onnxruntime and tensorrt once
    assert result.output.count("skipped: no CUDA GPU is visible") == 3 * 3 + 2
    assert "torch-replay-fp16" in result.output and "torch-cudagraphs-bf16" in result.output
    streams = CliRunner().invoke(cli, ["bench", "--backbones", "movineta0s", "--device", "cuda",
                                       "--resolution", "32", "--streams", "2"])
    assert streams.exit_code == 1 and len(streams.output.strip().splitlines()) == 1
    assert "no CUDA GPU is visible" in streams.output


def test_the_torch_rows_worker_on_cpu(tmp_path):
    """The path of the --device cuda rows, on the CPU: eager steps and the graph-replay row
    (its step body run eagerly), in bf16; fp16 and CUDA graphs are refused on the CPU."""
    model = randomize_(create_model("movineta0s"), 0).eval()
    artifact = export(model, "onnx", tmp_path / "a0", resolution=32, parity_frames=2)
    for backend in ("torch", "torch-replay"):
        result = run_worker(artifact, backend, threads=1, repeats=5, precision="bf16")
        assert result["status"] == "ok", result
        assert result["step"]["median_ms"] > 0 and result["frames_per_s"] > 0
    assert "head" not in result and "head ms" in latency_rows(
        {"backbones": {"movineta0s": {"backends": {"torch-replay": {**result, "status": "ok"}},
                                      "state_bytes": 1, "state_tensors": 1,
                                      "artifact_bytes": 1}}})[0]
    for backend in ("torch-replay", "torch-compiled"):
        assert backend_unavailable(backend, "cpu") == "CUDA graphs need --device cuda"
    assert "fp16 rows need --device cuda" in backend_unavailable("torch", "cpu", "fp16")
    assert rows_to_time(["torch", "onnxruntime"], ("fp32", "bf16")) == [
        ("torch", "fp32"), ("torch", "bf16"), ("onnxruntime", "fp32")]


def test_streams_served_from_the_bench_command_on_cpu(tmp_path):
    out = tmp_path / "streams.json"
    result = CliRunner().invoke(cli, ["bench", "--backbones", "movineta0s", "--resolution", "32",
                                      "--streams", "1,2", "--repeats", "5", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "streams @ 5 fps" in result.output and "best of 1,2 live streams" in result.output
    rows = json.loads(out.read_text())["streams"]
    assert [row["batch"] for row in rows] == [1, 2]
    assert all(row["tick_ms"] > 0 and row["precision"] == "fp32" for row in rows)


def test_streams_on_a_dynamic_batch_artifact_run_the_live_rows(tmp_path):
    """onnxruntime streams share one 3-slot --dynamic-batch session: 1 and 3 live streams."""
    out = tmp_path / "streams.json"
    result = CliRunner().invoke(cli, ["bench", "--backbones", "movineta0s", "--resolution", "32",
                                      "--streams", "1,3", "--backends", "onnxruntime",
                                      "--repeats", "5", "--json", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["streams"]
    assert [(r["backend"], r["batch"], r["slots"]) for r in rows] == [
        ("onnxruntime", 1, 3), ("onnxruntime", 3, 3)]
    refused = CliRunner().invoke(cli, ["bench", "--backbones", "movineta0s", "--streams", "1",
                                       "--backends", "litert"])
    assert refused.exit_code == 1 and "not litert" in refused.output


def test_bad_precision_or_slots_are_one_line():
    for option, value in (("--precision", "fp8"), ("--streams", "0,2")):
        result = CliRunner().invoke(cli, ["bench", "--backbones", "movineta0s", option, value])
        assert result.exit_code != 0 and value in result.output, result.output
