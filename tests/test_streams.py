"""Many streams per session (issue 24): streams join and leave fixed batch slots, one
batched step per tick, and every stream's embeddings equal that stream run alone (float32,
1e-5) with torch and with onnxruntime (an ONNX artifact exported with --batch = slots, with
and without --dynamic-batch); a bad frame or a poisoned result touches only its own stream."""
import json
import shutil

import numpy as np
import pytest

import grw_edge_runtime
from grw_edge.errors import ArtifactError, InputShapeError, NonFiniteOutputError
from grw_edge.exporters import export
from grw_edge.runtimes.torch import TorchSession
from grw_edge_runtime import MultiStreamSession
from tests.conftest import small_random_model

SIDE = 32


@pytest.fixture(scope="module")
def model():
    return small_random_model("movineta0s")


@pytest.fixture(scope="module")
def onnx_artifacts(model, tmp_path_factory):
    """ONNX artifacts of the model: batch 3 (slots), batch 1, and batch 1 to 3."""
    root = tmp_path_factory.mktemp("streams")
    common = dict(resolution=SIDE, parity_frames=2, include_reference=False)
    return [*(export(model, "onnx", root / f"b{batch}", batch=batch, **common)
              for batch in (3, 1)),
            export(model, "onnx", root / "b1-3", batch=3, dynamic_batch=True, **common)]


@pytest.fixture(scope="module", params=["torch", "onnxruntime", "onnxruntime-dynamic-batch"])
def backend(request, model, onnx_artifacts):
    """(a 3-slot session, a factory of batch-1 sessions) of one backend."""
    if request.param == "torch":
        return (TorchSession.for_model(model, resolution=SIDE, batch=3),
                lambda: TorchSession.for_model(model, resolution=SIDE))
    fixed, alone, dynamic = onnx_artifacts
    slots = dynamic if request.param.endswith("dynamic-batch") else fixed
    return (grw_edge_runtime.open(slots, "onnxruntime"),
            lambda: grw_edge_runtime.open(alone, "onnxruntime"))


def test_every_stream_equals_itself_alone_while_streams_join_and_leave(backend):
    """3 slots, 14 ticks: a from 0, b from 3, a leaves at 8, c joins at 9 into a's slot,
    b skips tick 6 (its states wait); each compared with its own batch-1 session."""
    session, open_alone = backend
    streams = MultiStreamSession(session)
    rng = np.random.default_rng(0)
    frames = {name: rng.random((14, 3, SIDE, SIDE), dtype=np.float32) for name in "abc"}
    ids, got = {}, {name: [] for name in "abc"}
    for tick in range(14):
        if tick == 0:
            ids["a"] = streams.join()
        if tick == 3:
            ids["b"] = streams.join()
        if tick == 8:
            streams.leave(ids.pop("a"))
        if tick == 9:
            ids["c"] = streams.join()
            assert streams.streams[ids["c"]].slot == 0  # a's slot, from the initial states
        live = {name: i for name, i in ids.items() if not (name == "b" and tick == 6)}
        out = streams.push({i: frames[name][tick] for name, i in live.items()})
        for name, i in live.items():
            got[name].append((tick, out[i]))
    for name, steps in got.items():
        alone = open_alone()
        for tick, embeddings in steps:
            expected = alone.push(frames[name][tick])
            assert np.abs(embeddings - expected[0]).max() <= 1e-5, (name, tick)
        if name != "a":
            assert np.abs(streams.classify(ids[name]) - alone.classify()[0]).max() <= 1e-4


def test_a_dynamic_batch_runs_only_the_slots_in_use(onnx_artifacts):
    """Rows up to the highest slot in use: 1 while a is alone, 2 with b, 3 with c, 2 again
    once c leaves; the head runs once per group of equal windows, at the group's size."""
    session = grw_edge_runtime.open(onnx_artifacts[2], "onnxruntime")
    assert session.manifest.batch_range == (1, 3)
    streams = MultiStreamSession(session)
    frame = np.full((3, SIDE, SIDE), 0.5, np.float32)
    ran, heads = [], []
    run_step, run_head = session._run_step, session._run_head
    session._run_step = lambda frames: ran.append(len(frames)) or run_step(frames)
    session._run_head = lambda windows: heads.append(windows.shape[:2]) or run_head(windows)
    a = streams.join()
    streams.push({a: frame})
    b = streams.join()
    streams.push({a: frame, b: frame})
    c = streams.join()
    streams.push({a: frame, b: frame, c: frame})
    streams.push({b: frame, c: frame})
    logits = streams.classify_many()
    assert heads == [(2, 3), (1, 2)]  # a and b hold 3 embeddings, c 2: two head calls
    streams.leave(c)
    streams.push({a: frame, b: frame})
    assert ran == [1, 2, 3, 3, 2]
    assert set(logits) == {a, b, c}


def test_a_batch_range_the_graphs_do_not_have_is_refused(onnx_artifacts, tmp_path):
    fixed = shutil.copytree(onnx_artifacts[0], tmp_path / "fixed")
    manifest = json.loads((fixed / "manifest.json").read_text())
    manifest["input"]["batch_range"] = [1, 3]
    (fixed / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="fixes the batch to 3"):
        grw_edge_runtime.open(fixed, "onnxruntime")
    manifest["input"]["batch_range"] = [1, 4]
    (fixed / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"batch_range must be \[smallest, 3\]"):
        grw_edge_runtime.open(fixed, "onnxruntime")


def test_classify_many_equals_classify_one_by_one(backend):
    """Streams with windows of the same and different lengths, on fixed and dynamic heads
    (a fixed batch pads each head call with copies)."""
    session, _ = backend
    streams = MultiStreamSession(session)
    ids = [streams.join() for _ in range(3)]
    rng = np.random.default_rng(2)
    for tick in range(3):
        streams.push({i: rng.random((3, SIDE, SIDE), dtype=np.float32)
                      for i in ids[:2 if tick == 2 else 3]})
    together = streams.classify_many()
    for i in ids:
        windows = np.stack(streams.streams[i].window)[None]
        alone = session._run_head(np.repeat(windows, session._rows_for(1), axis=0))[0]
        assert np.abs(together[i] - alone).max() <= 1e-5
    with pytest.raises(InputShapeError, match="no live stream 9"):
        streams.classify_many([ids[0], 9])


def test_a_poisoned_stream_is_refused_alone(backend):
    """Finite flags are per stream in both backends: the others' states move on."""
    session, _ = backend
    streams = MultiStreamSession(session)
    a, b = streams.join(), streams.join()
    session.start_from({k: np.concatenate([v[:1], np.full_like(v[1:2], np.inf), v[2:]])
                        for k, v in session.states().items()})
    frame = np.zeros((3, SIDE, SIDE), np.float32)
    out = streams.push({a: frame, b: frame})
    assert isinstance(out[b], NonFiniteOutputError) and out[a].shape == (1, 64)
    assert streams.states(a)["frame_count"][0, 0] == 1


def test_a_bad_frame_or_poisoned_state_touches_only_its_stream(model):
    session = TorchSession.for_model(model, resolution=SIDE, batch=2)
    streams = MultiStreamSession(session)
    good, bad = streams.join(), streams.join(on_nonfinite="reset")
    frame = np.zeros((3, SIDE, SIDE), np.float32)
    out = streams.push({good: frame, bad: frame * np.nan})
    assert isinstance(out[bad], InputShapeError) and out[good].shape == (1, 64)
    before = streams.states(good)
    session.start_from({k: np.concatenate([v, v * np.nan]) if v.shape[0] == 1 else v
                        for k, v in ((k, v[:1]) for k, v in session.states().items())})
    with pytest.warns(RuntimeWarning, match="stream 1"):
        out = streams.push({good: frame, bad: frame})
    assert out[bad] is None  # reset by its policy
    assert streams.states(bad)["frame_count"].tolist() == [[0, 0, 0, 0, 0]]
    assert streams.states(good)["frame_count"].tolist() == [[2, 0, 0, 0, 0]]
    assert before["frame_count"].tolist() == [[1, 0, 0, 0, 0]]
    with pytest.raises(InputShapeError, match="all 2 slots"):
        streams.join()
    streams.leave(bad)
    poisoned = streams.join()
    session.start_from({k: np.concatenate([v[:1], v[:1] * np.inf]) for k, v in
                        session.states().items()})
    out = streams.push({good: frame, poisoned: frame})
    assert isinstance(out[poisoned], NonFiniteOutputError) and out[good].shape == (1, 64)


def test_the_self_test_runs_in_a_free_slot_without_disturbing_the_streams(onnx_artifacts):
    streams = MultiStreamSession(grw_edge_runtime.open(onnx_artifacts[0], "onnxruntime"))
    a, b = streams.join(), streams.join(on_nonfinite="reset")
    rng = np.random.default_rng(1)
    for _ in range(3):
        streams.push({a: rng.random((3, SIDE, SIDE), dtype=np.float32),
                      b: rng.random((3, SIDE, SIDE), dtype=np.float32)})
    before = {i: (streams.states(i), list(streams.streams[i].window)) for i in (a, b)}
    report = streams.self_test(hashes=False)
    assert report.passed, report.line()
    assert report.frames > 1 and set(streams.streams) == {a, b}  # its slot is free again
    for i, (states, window) in before.items():
        after = streams.states(i)
        assert all(np.array_equal(after[name], value) for name, value in states.items())
        assert all(np.array_equal(x, y) for x, y in zip(streams.streams[i].window, window))
    streams.join()
    full = streams.self_test(hashes=False)  # no free slot: a failed report that says so
    assert not full.passed and "all 3 slots hold a stream" in full.line()
