"""Leftovers of killed runs are removed by the next run into the same place, and a
terminated export cleans up after itself."""
import os
import signal
import subprocess
import sys
import time

from grw_edge._io import atomic_write_path, remove_stale_temporaries

DEAD_PID = 2**22 + 12345  # above the default pid_max: no process has it


def test_the_next_write_removes_what_a_dead_process_left(tmp_path):
    stale_file = tmp_path / f".checkpoint.safetensors.{DEAD_PID}.abc123.tmp"
    stale_file.write_bytes(b"")
    stale_folder = tmp_path / f".a0s-onnx.{DEAD_PID}.k2j4_x9"
    (stale_folder / "sub").mkdir(parents=True)
    live = tmp_path / f".checkpoint.safetensors.{os.getppid()}.abc123.tmp"  # a live process
    live.write_bytes(b"")
    other = tmp_path / f".other.bin.{DEAD_PID}.zz.tmp"
    other.write_bytes(b"")
    with atomic_write_path(tmp_path / "checkpoint.safetensors") as tmp:
        tmp.write_bytes(b"new")
    assert not stale_file.exists()  # removed by the next write of its target
    assert live.exists() and other.exists() and stale_folder.exists()  # not its target
    assert remove_stale_temporaries(tmp_path, "a0s-onnx") == [stale_folder]
    assert remove_stale_temporaries(tmp_path) == [other]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["checkpoint.safetensors", live.name])


def test_sigterm_during_export_leaves_no_staging_folder(tmp_path):
    env = {**os.environ, "GRW_EDGE_PROGRESS": "0"}
    command = [sys.executable, "-c", "from grw_edge.cli import main; main()", "export",
               "--backbone", "movineta0s", "--random-init", "--resolution", "32",
               "--out", str(tmp_path / "art")]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not any(p.name.startswith(".art.") for p in tmp_path.iterdir()):
        assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=120)[0].decode()
    assert process.returncode == 130 and "interrupted" in output
    assert list(tmp_path.iterdir()) == []
