#!/usr/bin/env bash
# Issue 25, item 6, as one device call (~9 min): pytest on the GPU, the model-alone train step eager
# and compiled, and the demo's `dvc repro` (time, the train log's img/s per epoch). Logs go to $OUT.
#
#   on the GPU machine (run tool, carry [".whl"], timeout_s 590):  bash benchmarks/gpu_check.sh
#   here, the same steps at toy sizes on the CPU:                   GPU_CHECK_CPU=1 OUT=/tmp/gc bash benchmarks/gpu_check.sh
#
# Not in it (too long for one call): training inside `dvc repro` at recipe scale on CitySynth 1024x2048.
set -u
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
if [ -z "${GPU_CHECK_CPU:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$HOME/site" .whl/*.whl || exit 1
  export PYTHONPATH=$HOME/site:$ROOT PATH=$HOME/site/bin:$PATH
  DEVICE=cuda; STEP="--size 512 1024 --batch 8 --amp bf16 --channels-last --backbone resnet50 --output-stride 8 --steps 20"
  PYTEST="--ignore=tests/test_dvc_pipeline.py"; LIMIT_PYTEST=200; LIMIT_STEP=200; LIMIT_DEMO=150
else
  export PYTHONPATH=$ROOT
  DEVICE=cpu; STEP="--size 64 128 --batch 2 --backbone resnet18 --output-stride 16 --steps 2 --repeats 1 --no-compile"
  PYTEST="tests/test_training.py -k read_late"; LIMIT_PYTEST=600; LIMIT_DEMO=0; LIMIT_STEP=600
fi
export PYTHONUNBUFFERED=1 DVC_NO_ANALYTICS=1
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; nproc; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

echo "== pytest"
/usr/bin/time -f "pytest wall %e s" timeout "$LIMIT_PYTEST" python3 -m pytest -q -p no:cacheprovider $PYTEST 2>&1 | tail -15 | tee "$OUT/pytest.txt"

echo "== model-alone step, eager and compiled"
(cd benchmarks && timeout "$LIMIT_STEP" python3 bench_step_compile.py --device $DEVICE $STEP) 2>&1 | tail -12 | tee "$OUT/step.txt"

if [ "$LIMIT_DEMO" -gt 0 ]; then
  echo "== the demo's dvc repro"
  git init -q 2>/dev/null; git add -A && git -c user.name=x -c user.email=x@y commit -qm run
  start=$SECONDS
  timeout "$LIMIT_DEMO" dvc repro > "$OUT/repro.txt" 2>&1
  echo "dvc repro rc $? in $((SECONDS - start)) s" | tee -a "$OUT/repro.txt"
  cp logs/train.log "$OUT/" 2>/dev/null && cat logs/train.log
  cp metrics/*.json "$OUT/" 2>/dev/null
fi
