#!/usr/bin/env bash
# The GPU check of issues 12 and 24: one run, <= 6 minutes on a 16-core machine with one NVIDIA
# GPU, writing a Markdown report step by step: each step appends its section as it finishes
# and runs under a timeout, so a killed or stuck run still leaves what was measured.  It needs torch with CUDA, onnx and onnxruntime plus the small
# wheels grw-edge depends on (av, fvcore, iopath, yacs, termcolor, onnxconverter-common...).
#
#   benchmarks/gpu_check.sh [OUT_DIR]          # default OUT_DIR: benchmarks/gpu
#
# Steps: graph-safety (the CPU guard and the gpu-marked tests); make-synthetic; train 20 steps (A0S, 172 px, 16 frames at 5 fps, batch 16, bf16)
# then --resume for 10 more; torchrun with 1 process; eval on CUDA; export + verify (ONNX
# Runtime, and the torch session on CUDA with CUDA graphs); model-only vs end-to-end
# training clips/s; GPU latency rows of `grw-edge bench --device cuda` (eager, graph replay,
# session, per precision); streams served per GPU (`grw-edge bench --streams`); the session
# with torch.compile before capture (A0S, fp32 and fp16).
# GRW_EDGE_GPU_CHECK_SMOKE=1 runs the same steps on the CPU at toy sizes (what the tests do).
set -uo pipefail

OUT=${1:-benchmarks/gpu}
PY=${PYTHON:-python}
SMOKE=${GRW_EDGE_GPU_CHECK_SMOKE:-0}
WORKERS=${GRW_EDGE_GPU_CHECK_WORKERS:-8}

if [[ $SMOKE == 1 ]]; then
    DEVICE=cpu; VIDEO_FRAMES=20; SIZE=40; RES=32; FRAMES=4; BATCH=2; STEPS=2; MORE=1; VIDEOS=2; WORKERS=0
    EVAL_CLIPS=4; VERIFY="--clips 1 --frames 4"; SPEED="--steps 1 --warmup 1"
    PARITY="--parity-clips 1"; BENCH="--backbones movineta0s --backends torch,onnxruntime --resolution 32 --repeats 5"
    STREAMS="--backbones movineta0s --resolution 32 --streams 1,2 --repeats 5"
    COMPILED="--backbones movineta0s --backends torch-compiled --resolution 32 --repeats 5"
else
    DEVICE=cuda; VIDEO_FRAMES=80; SIZE=200; RES=172; FRAMES=16; BATCH=16; STEPS=20; MORE=5; VIDEOS=16
    STREAMS="--backbones movineta0s,movineta1s,movineta2s --streams 1,8,64,256 --repeats 20 --precision fp32,bf16"
    COMPILED="--backbones movineta0s --backends torch-compiled --repeats 50 --precision fp32,fp16"
    EVAL_CLIPS=48; VERIFY="--clips 2"; SPEED="--steps 20"; PARITY=""; BENCH="--backbones movineta0s,movineta1s,movineta2s --repeats 50 --precision fp32,fp16,bf16"
    if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "gpu_check: FAILED: no CUDA GPU is visible to torch (torch.cuda.is_available() is" \
             "False); this check needs an NVIDIA GPU and a CUDA build of torch" \
             "(GRW_EDGE_GPU_CHECK_SMOKE=1 runs the CPU smoke version)" >&2
        exit 2
    fi
fi

mkdir -p "$OUT/logs" || exit 2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
REPORT="$OUT/report.md"
FAILED=()
STEP_TIMEOUT=${GRW_EDGE_GPU_CHECK_STEP_TIMEOUT:-90}  # seconds per step; a stuck step is cut
export GRW_EDGE_CACHE="$WORK/cache" GRW_EDGE_PROGRESS=0
GRW=("$PY" -m grw_edge.cli)

"$PY" - "$DEVICE" > "$REPORT" <<'PYTHON'
"""The report's header, written before the first step."""
import platform
import sys

import torch

gpu = torch.cuda.get_device_name() if sys.argv[1] == "cuda" else "none (CPU smoke run)"
print("# grw-edge GPU check\n")
print(f"GPU: {gpu}; torch {torch.__version__} (CUDA {torch.version.cuda}); "
      f"Python {platform.python_version()}; {platform.platform()}\n")
print("Each step appends its section when it finishes (a missing section: not reached).")
PYTHON

step() {  # step NAME COMMAND...: run under the timeout, log, append its section to the report
    local name=$1; shift
    local start=$SECONDS
    echo "gpu_check: $name ..." >&2
    printf '\n## %s\n\n| step | result | wall |\n|---|---|---|\n' "$name" >> "$REPORT"
    if timeout "$STEP_TIMEOUT" "$@" > "$OUT/logs/$name.log" 2>&1; then
        echo "| $name | ok | $((SECONDS - start)) s |" >> "$REPORT"
    else
        echo "| $name | **FAILED** (see logs/$name.log) | $((SECONDS - start)) s |" >> "$REPORT"
        echo "gpu_check: $name FAILED; last lines of $OUT/logs/$name.log:" >&2
        tail -n 15 "$OUT/logs/$name.log" >&2
        FAILED+=("$name")
    fi
}

section() {  # section COMMAND...: append what a finished step measured to the report
    "$@" >> "$REPORT" 2>> "$OUT/logs/report.log" || echo "(not measured: see logs/report.log)" >> "$REPORT"
}

training_speed() {
    "$PY" - "$OUT" "$WORK" <<'PYTHON'
"""Training speed: start-up and the steady window of the end-to-end run vs the model alone."""
import json
import sys
from pathlib import Path

out, work = Path(sys.argv[1]), Path(sys.argv[2])
metrics = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()]
steady = next(m for m in reversed(metrics) if "clips_per_s" in m)
model_only = next(json.loads(line) for line in reversed(
    (out / "logs" / "model-only-speed.log").read_text().splitlines()) if line.startswith("{"))
print(f"\n- time to the first step (resumed run): {steady['first_step_s']:.1f} s (goal: <= 5 s)")
print(f"- end to end, last logging window: {steady['clips_per_s']:.1f} clips/s, "
      f"{steady.get('data_wait', float('nan')):.0%} of it waiting for batches")
print(f"- model only: {model_only['clips_per_s']:.1f} clips/s")
print(f"- ratio: {steady['clips_per_s'] / model_only['clips_per_s']:.0%} (goal: >= 80%)")
PYTHON
}

step graph-safety "$PY" -m pytest -q -p no:cacheprovider tests/test_graph_safety.py \
    tests/test_torch_session.py tests/test_device_placement.py -k "not compiled"
TRAIN=(--backbone movineta0s --data "$WORK/data" --frames "$FRAMES" --fps 5 --resolution "$RES"
       --batch-size "$BATCH" --workers "$WORKERS" --precision bf16 --log-every 5)
step make-synthetic "${GRW[@]}" make-synthetic "$WORK/data" --videos-per-class "$VIDEOS" \
    --test-videos-per-class 4 --frames "$VIDEO_FRAMES" --size "$SIZE" --fps 10
step train "${GRW[@]}" train "${TRAIN[@]}" --steps "$STEPS" --checkpoint-every "$STEPS" \
    --out "$WORK/run"
step train-resume "${GRW[@]}" train "${TRAIN[@]}" --steps $((STEPS + MORE)) \
    --checkpoint-every "$MORE" --out "$WORK/run" --resume
step torchrun-1-process "$PY" -m torch.distributed.run --standalone --nproc_per_node 1 \
    -m grw_edge.cli train "${TRAIN[@]}" --steps "$MORE" --out "$WORK/run-ddp"
step eval "${GRW[@]}" eval --data "$WORK/data" --checkpoint "$WORK/run/checkpoint.safetensors" \
    --frames "$FRAMES" --fps 5 --resolution "$RES" --max-clips "$EVAL_CLIPS" \
    --batch-size "$BATCH" --workers "$WORKERS" --json
# shellcheck disable=SC2086
step export "${GRW[@]}" export --checkpoint "$WORK/run/checkpoint.safetensors" \
    --resolution "$RES" --parity-frames "$FRAMES" $PARITY --out "$WORK/a0s"
# shellcheck disable=SC2086
step verify-onnxruntime "${GRW[@]}" verify "$WORK/a0s" $VERIFY
# shellcheck disable=SC2086
step verify-torch-$DEVICE "${GRW[@]}" verify "$WORK/a0s" --backend torch --device "$DEVICE" $VERIFY
# shellcheck disable=SC2086
step model-only-speed "$PY" -m grw_edge.benchmarks.train_speed --device "$DEVICE" \
    --batch-size "$BATCH" --frames "$FRAMES" --resolution "$RES" $SPEED
section training_speed
# shellcheck disable=SC2086
step bench "${GRW[@]}" bench --device "$DEVICE" $BENCH --markdown "$WORK/latency.md"
section cat "$WORK/latency.md"
# shellcheck disable=SC2086
step streams "${GRW[@]}" bench --device "$DEVICE" $STREAMS --markdown "$WORK/streams.md"
section cat "$WORK/streams.md"
# last: torch.compile before capture takes about a minute per precision
# shellcheck disable=SC2086
step bench-compiled "${GRW[@]}" bench --device "$DEVICE" $COMPILED --markdown "$WORK/compiled.md"
section cat "$WORK/compiled.md"

echo "gpu_check: report written to $REPORT" >&2
if (( ${#FAILED[@]} )); then
    echo "gpu_check: FAILED steps: ${FAILED[*]}" >&2
    exit 1
fi
