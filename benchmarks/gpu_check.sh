#!/usr/bin/env bash
# Issue 16's accelerator check, in one command that fits about 9 minutes of device time:
#   1. benchmarks.dynamic_filter at batch 256 (forward and forward+backward against the copy
#      bandwidth the benchmark measures on the device), and benchmarks.local_filter_forms (the
#      XLA formulations of the op's two gradients, each alone);
#   2. benchmarks.train_step for the paper model at batch 16: unrolled and rolled scan, float32 and
#      bfloat16; then the rolled float32 step with the CPU's matrix-product convolution gradients
#      forced on (--conv matmul), against XLA's (the default off the CPU): what helps on the CPU
#      must not slow the accelerator;
#   3. as many steps of moving_mnist.py:paper as fit in TRAIN_S seconds of training, on the
#      embedded shapes (the device machine has no MNIST files), with its steps/s (results.json).
# Writes seven files into $OUT (default /tmp/gpu_check; the device tool returns at most eight):
# summary.txt, logs.txt (every part's output) and the JSON of each part; the training run's work
# directory is $WORK. Each part has its own time limit, and a part that fails or runs out of time
# leaves its log and does not stop the others. TRAIN_S and LIMIT (each part's seconds) can be set
# from the environment.
#
#   bash benchmarks/gpu_check.sh            # on the accelerator
#   SMALL=1 bash benchmarks/gpu_check.sh    # seconds-long smoke run of the same commands (any CPU)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_check}"
WORK="${WORK:-/tmp/gpu_check_work}"
PY="${PYTHON:-python}"
mkdir -p "$OUT"
rm -rf "$WORK/moving_mnist"  # a fresh run, not a resumed one

if [[ "${SMALL:-0}" == 1 ]]; then
  SHAPES="1,8,8,1,3,3"; FILTER_FLAGS=(--runs 2 --flush-bytes 1048576)
  TRAIN_FLAGS=(--small --runs 1 --eval-batch 0 --batch-size 2)
  MM_CONFIG="experiments/configs/moving_mnist.py:quick"; TRAIN_S=3; NUM_EVAL=20; LIMIT=300
else
  SHAPES="256,64,64,1,9,9"; FILTER_FLAGS=()
  TRAIN_FLAGS=(--runs 10 --eval-batch 0 --batch-size 16)
  MM_CONFIG="experiments/configs/moving_mnist.py:paper"; TRAIN_S="${TRAIN_S:-120}"; NUM_EVAL=400
  LIMIT="${LIMIT:-240}"
fi

part() {  # part NAME SECONDS COMMAND...: runs COMMAND with a time limit, logs to $OUT/logs.txt
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  echo "=== $name: $*" >>"$OUT/logs.txt"
  timeout "$limit" "$@" >>"$OUT/logs.txt" 2>&1
  local rc=$?
  echo "$name: exit $rc after $((SECONDS - start)) s" | tee -a "$OUT/summary.txt"
}

"$PY" -c "import jax; print(jax.__version__, jax.devices())" | tee "$OUT/summary.txt"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv \
  >>"$OUT/summary.txt" 2>/dev/null
part dynamic_filter "$LIMIT" "$PY" -m benchmarks.dynamic_filter --shapes "$SHAPES" \
  "${FILTER_FLAGS[@]}" --no-system-allocator --out "$OUT/dynamic_filter.json"
part local_filter_forms "$LIMIT" "$PY" -m benchmarks.local_filter_forms --shapes "$SHAPES" \
  --out "$OUT/local_filter_forms.json"
part train_step "$LIMIT" "$PY" -m benchmarks.train_step "${TRAIN_FLAGS[@]}" \
  --unroll true,1 --dtype float32,bfloat16 --out "$OUT/train_step.json"
part train_step_conv "$LIMIT" "$PY" -m benchmarks.train_step "${TRAIN_FLAGS[@]}" \
  --unroll 1 --conv xla,matmul --out "$OUT/train_step_conv.json"
part moving_mnist "$LIMIT" "$PY" -m experiments.main --config="$MM_CONFIG" \
  --config.data.source=shapes --config.max_train_time_s="$TRAIN_S" --config.eval_every_steps=0 \
  --config.num_eval_sequences="$NUM_EVAL" --workdir="$WORK/moving_mnist"
cp "$WORK/moving_mnist/results.json" "$OUT/moving_mnist_results.json" 2>/dev/null
