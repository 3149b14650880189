"""grw-edge bench: FLOPs counts, the JSON schema, plots, and skipped backends."""
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from grw_edge.benchmarks.bench import backend_unavailable, report_text, run_bench, write_plots
from grw_edge.benchmarks.flops import UPSTREAM_FVCORE_GFLOPS, _count, count_flops
from grw_edge.cli import cli
from grw_edge.models import create_model


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
    assert "torch" in entry["backends"]["onnxruntime"]["modules"]
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
                                      "--resolution", "32", "--repeats", "5"])
    assert result.exit_code == 0, result.output
    assert result.output.count("skipped: no CUDA GPU is visible") == len(CUDA_BACKENDS)
