#!/usr/bin/env bash
# The GPU check of issue 12: one run, <= 8 minutes on a 16-core machine with one NVIDIA GPU,
# writing a Markdown report.  It needs torch with CUDA, onnx and onnxruntime plus the small
# wheels grw-edge depends on (av, fvcore, iopath, yacs, termcolor, onnxconverter-common...).
#
#   benchmarks/gpu_check.sh [OUT_DIR]          # default OUT_DIR: benchmarks/gpu
#
# Steps: make-synthetic; train 40 steps (A0S, 172 px, 16 frames at 5 fps, batch 16, bf16)
# then --resume for 10 more; torchrun with 1 process; eval on CUDA; export + verify (ONNX
# Runtime, and the torch session on CUDA with CUDA graphs); model-only vs end-to-end
# training clips/s; GPU latency rows of `grw-edge bench --device cuda`.
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
else
    DEVICE=cuda; VIDEO_FRAMES=80; SIZE=200; RES=172; FRAMES=16; BATCH=16; STEPS=40; MORE=10; VIDEOS=16
    EVAL_CLIPS=96; VERIFY="--clips 3"; SPEED="--steps 30"; PARITY=""; BENCH="--backbones movineta0s,movineta1s,movineta2s --repeats 100"
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
ROWS="$WORK/rows.md"
FAILED=()
export GRW_EDGE_CACHE="$WORK/cache" GRW_EDGE_PROGRESS=0
GRW=("$PY" -m grw_edge.cli)

step() {  # step NAME COMMAND...: run, time, log; a failure is reported and remembered
    local name=$1; shift
    local start=$SECONDS
    echo "gpu_check: $name ..." >&2
    if "$@" > "$OUT/logs/$name.log" 2>&1; then
        echo "| $name | ok | $((SECONDS - start)) s |" >> "$ROWS"
    else
        echo "| $name | **FAILED** (see logs/$name.log) | $((SECONDS - start)) s |" >> "$ROWS"
        echo "gpu_check: $name FAILED; last lines of $OUT/logs/$name.log:" >&2
        tail -n 15 "$OUT/logs/$name.log" >&2
        FAILED+=("$name")
    fi
}

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
# shellcheck disable=SC2086
step bench "${GRW[@]}" bench --device "$DEVICE" $BENCH --markdown "$WORK/latency.md"

"$PY" - "$OUT" "$WORK" "$ROWS" "$DEVICE" > "$REPORT" <<'PYTHON'
"""Write the Markdown report from the logs and measurements."""
import json
import platform
import sys
from pathlib import Path

import torch

out, work, rows, device = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]


def last_json(path):
    for line in reversed(path.read_text().splitlines() if path.is_file() else []):
        if line.startswith("{"):
            return json.loads(line)
    return None


gpu = torch.cuda.get_device_name() if device == "cuda" else "none (CPU smoke run)"
print("# grw-edge GPU check\n")
print(f"GPU: {gpu}; torch {torch.__version__} (CUDA {torch.version.cuda}); "
      f"Python {platform.python_version()}; {platform.platform()}\n")
print("| step | result | wall |\n|---|---|---|")
print(rows.read_text(), end="")
metrics = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()] \
    if (work / "run" / "metrics.jsonl").is_file() else []
end_to_end = next((m["clips_per_s"] for m in reversed(metrics) if "clips_per_s" in m), None)
model_only = last_json(out / "logs" / "model-only-speed.log")
print("\n## Training speed (A0S, bf16)\n")
if end_to_end and model_only:
    ratio = end_to_end / model_only["clips_per_s"]
    print(f"- end to end (`grw-edge train`, last logged step, resumed run): {end_to_end:.1f} clips/s")
    print(f"- model only (random clips on the device): {model_only['clips_per_s']:.1f} clips/s")
    print(f"- ratio: {ratio:.0%} (goal: >= 60%)")
else:
    print("- not measured (a step above failed)")
evaluation = None
log = out / "logs" / "eval.log"
if log.is_file():
    text = log.read_text()
    start = text.find("{")
    try:
        evaluation = json.loads(text[start:]) if start >= 0 else None
    except ValueError:
        evaluation = None
if evaluation:
    print(f"\n## Eval on {device}\n\n{evaluation['clips']} clips, "
          f"{evaluation['clips_per_second']:.1f} clips/s")
latency = work / "latency.md"
print("\n## Latency (`grw-edge bench --device " + device + "`)\n")
print(latency.read_text() if latency.is_file() else "not measured (bench failed)")
PYTHON

echo "gpu_check: report written to $REPORT" >&2
if (( ${#FAILED[@]} )); then
    echo "gpu_check: FAILED steps: ${FAILED[*]}" >&2
    exit 1
fi
