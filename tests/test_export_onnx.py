"""ONNX export: artifacts, parity with the reference through onnxruntime, and clear refusals."""
import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import grw_edge.runtimes as runtimes
from grw_edge.errors import ArtifactError, ExportError, InputShapeError
from grw_edge.exporters import export
from grw_edge.exporters.onnx import FORBIDDEN_OPS
from grw_edge.verify import verify_artifact
from tests.conftest import SMALL_HEAD, small_random_model



@pytest.mark.parametrize("name", ["movineta0s", "movineta1s", "movineta2s", "movineta3b"])
def test_artifact_layout_and_recorded_parity(artifacts, name):
    path = artifacts[name]
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and manifest["backbone"] == name
    assert manifest["mode"] == ("clip" if name == "movineta3b" else "streaming")
    assert manifest["parity"]["max_abs_logits"] <= 1e-3
    assert manifest["parity"]["max_abs_embeddings"] <= 1e-4
    assert manifest["parity"]["top1_agreement"] == 1.0
    assert (path / "labels.txt").read_text().splitlines()[0] == "abseiling"
    step = onnx.load(str(path / "step.onnx"))
    assert not {node.op_type for node in step.graph.node} & FORBIDDEN_OPS
    names = [i.name for i in step.graph.input]
    assert names == ["frames", *(s["input"] for s in manifest["states"])]
    outputs = [o.name for o in step.graph.output]
    assert outputs == ["embeddings", *(s["output"] for s in manifest["states"])]
    assert not list(path.parent.glob(f".{name}.*"))  # no staging directory left


@pytest.mark.parametrize("name", ["movineta0s", "movineta1s", "movineta2s", "movineta3b"])
def test_verify_streams_the_artifact_against_the_reference(artifacts, name):
    report = verify_artifact(artifacts[name], clips=2, frames=8)
    assert report.failures() == [], report
    assert report.backend == "onnxruntime" and report.top1_agreement == 1.0


def test_a0s_at_full_resolution(tmp_path):
    model = small_random_model("movineta0s", 3)
    path = export(model, "onnx", tmp_path / "a0s172", parity_frames=4)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["input"]["shape"] == [1, 3, 1, 172, 172]
    assert manifest["input"]["preprocess"]["resize"] == [200, 200]
    buffers = {s["name"]: s["shape"] for s in manifest["states"]}
    assert buffers["blocks.b1_l0.deep.buffer"] == [1, 2, 80, 22, 22]
    assert len(manifest["states"]) == 27
    assert manifest["parity"]["max_abs_logits"] <= 1e-3


def test_session_api_with_raw_and_preprocessed_frames(artifacts):
    session = runtimes.open(artifacts["movineta0s"], threads=1)
    raw = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    assert session.push(raw).shape == (1, 1, SMALL_HEAD.embed_dim)
    assert session.push(np.random.rand(3, 48, 48).astype(np.float32)).shape == (1, 1, 64)
    assert session.classify().shape == (1, 600)
    first = session.classify()
    session.reset()
    session.push(raw)
    session.push(np.zeros((3, 48, 48), np.float32))
    assert not np.allclose(session.classify(), first)  # other frames, other logits
    with pytest.raises(InputShapeError, match=r"\(1, 3, 1, 48, 48\)"):
        session.push(np.zeros((3, 40, 40), np.float32))
    with pytest.raises(InputShapeError, match=r"uint8 \(raw\) or float32"):
        session.push(np.zeros((3, 48, 48), np.float64))
    session.reset()
    with pytest.raises(InputShapeError, match="push at least one frame"):
        session.classify()


def test_torch_and_onnxruntime_sessions_agree(artifacts):
    clip = np.random.default_rng(1).random((1, 3, 6, 48, 48), dtype=np.float32)
    results = {}
    for backend in ("torch", "onnxruntime"):
        session = runtimes.open(artifacts["movineta2s"], backend)
        results[backend] = (session.embed_clip(clip), session.classify())
    assert np.abs(results["torch"][0] - results["onnxruntime"][0]).max() <= 1e-4
    assert np.abs(results["torch"][1] - results["onnxruntime"][1]).max() <= 1e-3


def test_fused_model_emits_the_head_over_the_window(artifacts):
    path = artifacts["movineta0s"]
    manifest = json.loads((path / "manifest.json").read_text())
    fused = ort.InferenceSession(str(path / "fused.onnx"), providers=["CPUExecutionProvider"])
    states = {s["input"]: np.zeros(s["shape"], np.float32)
              for s in [*manifest["states"], manifest["fused"]["window_state"]]}
    outputs = [o.name for o in fused.get_outputs()]
    window = manifest["frames_per_clip"]
    clip = np.random.default_rng(2).random((1, 3, window + 2, 48, 48), dtype=np.float32)
    for t in range(clip.shape[2]):
        result = dict(zip(outputs, fused.run(None, {"frames": clip[:, :, t:t + 1], **states})))
        states = {name: result[name + ".next"] for name in states}
    session = runtimes.open(path)
    session.embed_clip(clip)  # keeps the last `window` embeddings
    assert np.abs(result["logits"] - session.classify()).max() <= 1e-3


def test_mobile_format_loads_in_onnxruntime(artifacts):
    path = artifacts["movineta0s"]
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["mobile"]["step"] == "step.ort"
    config = (path / manifest["mobile"]["required_operators"]).read_text()
    assert "Conv" in config
    step = ort.InferenceSession(str(path / "step.ort"), providers=["CPUExecutionProvider"])
    feed = {i.name: np.zeros([d for d in i.shape], np.float32) for i in step.get_inputs()}
    embeddings = step.run(["embeddings"], feed)[0]
    reference = ort.InferenceSession(str(path / "step.onnx"), providers=["CPUExecutionProvider"])
    assert np.abs(embeddings - reference.run(["embeddings"], feed)[0]).max() <= 1e-5


def copy_artifact(source, destination):
    shutil.copytree(source, destination)
    return destination, json.loads((destination / "manifest.json").read_text())


def test_damaged_manifests_get_clear_errors(artifacts, tmp_path):
    broken, manifest = copy_artifact(artifacts["movineta2s"], tmp_path / "broken")
    (broken / "manifest.json").write_text("{ not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        runtimes.open(broken)

    renamed, manifest = copy_artifact(artifacts["movineta2s"], tmp_path / "renamed")
    manifest["states"][3]["input"] = "blocks.nowhere.buffer"
    (renamed / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="has no input 'blocks.nowhere.buffer'"):
        runtimes.open(renamed)

    dropped, manifest = copy_artifact(artifacts["movineta2s"], tmp_path / "dropped")
    missing = manifest["states"].pop(0)["input"]
    (dropped / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=f"input '{missing}' is not in the manifest"):
        runtimes.open(dropped)

    incomplete, manifest = copy_artifact(artifacts["movineta2s"], tmp_path / "incomplete")
    del manifest["head"]
    (incomplete / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="lacks the field 'head'"):
        runtimes.open(incomplete)

    (tmp_path / "lost").mkdir()
    with pytest.raises(ArtifactError, match="has no manifest.json"):
        runtimes.open(tmp_path / "lost")


def test_export_refuses_bad_requests_and_leaves_nothing(tmp_path):
    model = small_random_model("movineta3b")
    with pytest.raises(ExportError, match="no fused streaming form"):
        export(model, "onnx", tmp_path / "fused3b", resolution=32, fused=True)
    with pytest.raises(ExportError, match="--dynamic-batch needs --batch of at least 2"):
        export(model, "onnx", tmp_path / "b1", resolution=32, dynamic_batch=True)
    with pytest.raises(ExportError, match="unknown target 'tflite'"):
        export(model, "tflite", tmp_path / "x")
    (tmp_path / "taken").mkdir()
    with pytest.raises(ExportError, match="--overwrite"):
        export(model, "onnx", tmp_path / "taken", resolution=32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
