#!/usr/bin/env bash
# The package's GPU check, in one command on a bare GPU machine: the CUDA-marked
# tests, one DiffKG and one LightGCN epoch on a full dataset (phase times and
# peak GPU memory in the result JSONs), the recommendation step of
# speed_step.py and, with two GPUs, a 2-process NCCL torchrun smoke run. Each
# step runs under its own time limit (in all about 9 minutes) and writes its
# output under the output folder; summary.json says how each step ended.
#
#   benchmarks/gpu_check.sh [--device cuda|cpu] [--data DIR] [--out DIR]
#                           [--python PY] [--smoke]
#
# Where only a few files can be copied back from the GPU machine, pack the
# folder: `benchmarks/gpu_check.sh --out /tmp/gpu; tar czf gpu.tgz -C /tmp gpu`.
# --device cpu --smoke is the dry run tests/test_gpu_check.py makes on the CPU
# (the CUDA tests then run on the CPU, the epochs on the synthetic data, capped).
# Python: --python, else python3 if its torch sees the device, else a venv
# .venv-gpu with torch==2.13.0 and the package (this needs a package index).
# The package itself is read from this checkout (PYTHONPATH), not installed.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEVICE=cuda
DATA="$ROOT/../shared/data/alibaba-ifashion"
OUTDIR="$ROOT/benchmarks/results/gpu"
PY=""
SMOKE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --device) DEVICE="$2"; shift 2 ;;
        --data) DATA="$2"; shift 2 ;;
        --out) OUTDIR="$2"; shift 2 ;;
        --python) PY="$2"; shift 2 ;;
        --smoke) SMOKE=1; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
mkdir -p "$OUTDIR" || { echo "gpu_check.sh: cannot create $OUTDIR" >&2; exit 2; }
OUTDIR="$(cd "$OUTDIR" && pwd)"
cd "$ROOT"

sees_device() {  # Whether $1's torch imports and sees $DEVICE.
    "$1" -c "import sys, torch; sys.exit(0 if '$DEVICE' == 'cpu' or torch.cuda.is_available() else 1)" 2>/dev/null
}
if [ "$SMOKE" = 0 ] && [ ! -d "$DATA" ]; then
    echo "gpu_check.sh: no dataset at $DATA (pass --data)" >&2
    exit 2
fi
if [ "$DEVICE" = cuda ] && ! command -v nvidia-smi >/dev/null; then
    echo "gpu_check.sh: no NVIDIA GPU here (nvidia-smi not found); --device cpu --smoke is the dry run" >&2
    exit 2
fi
if [ -z "$PY" ]; then
    if sees_device python3; then
        PY=python3
    elif [ -x .venv-gpu/bin/python ] && sees_device .venv-gpu/bin/python; then
        PY="$ROOT/.venv-gpu/bin/python"  # Installed by an earlier run.
    else
        echo "gpu_check.sh: python3's torch does not see $DEVICE; installing torch==2.13.0 into .venv-gpu"
        python3 -m venv .venv-gpu && .venv-gpu/bin/pip install -q torch==2.13.0 torch-geometric numpy scipy tqdm pytest \
            || { echo "gpu_check.sh: could not install torch (no package index?); pass --python" >&2; exit 2; }
        PY="$ROOT/.venv-gpu/bin/python"
    fi
fi
sees_device "$PY" || { echo "gpu_check.sh: $PY's torch does not see $DEVICE" >&2; exit 2; }
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if [ "$SMOKE" = 1 ]; then
    DATA=synthetic
    MARK='cuda and not slow'
    CAP=(--max-batches 2)
    DIFFKG_CAP=(--denoiser-hidden-channels 16 --no-use-compile)
else
    MARK=cuda
    CAP=()
    DIFFKG_CAP=()
fi

declare -a STEPS=()
FAILED=0
step() {  # step NAME SECONDS COMMAND...: runs it under its limit, logs it.
    local name="$1" limit="$2"; shift 2
    local start=$SECONDS
    echo "== $name (at most $limit s)"
    timeout --kill-after=10 "$limit" "$@" >"$OUTDIR/$name.log" 2>&1
    local rc=$?
    local took=$((SECONDS - start))
    tail -n 3 "$OUTDIR/$name.log"
    echo "== $name: exit $rc after $took s"
    [ "$rc" = 0 ] || FAILED=1
    STEPS+=("{\"step\": \"$name\", \"exit\": $rc, \"seconds\": $took, \"limit\": $limit}")
}

step env 30 "$PY" -c "
import json, platform, subprocess, torch, torch_geometric
info = {'python': platform.python_version(), 'torch': torch.__version__,
        'torch_geometric': torch_geometric.__version__,
        'cuda': torch.version.cuda, 'device': '$DEVICE',
        'gpus': [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}
print(json.dumps(info))
if '$DEVICE' == 'cuda':
    print(subprocess.run(['nvidia-smi'], capture_output=True, text=True).stdout)
"
# (Only the CUDA tests' file: the others import extras, e.g. Optuna, that a
# GPU machine's image may lack.)
step tests 200 env DIFFKG_TEST_DEVICE="$DEVICE" "$PY" -m pytest -q -p no:cacheprovider -m "$MARK" tests/test_cuda.py
step diffkg-1epoch 180 "$PY" -m diffkg_pyg train "$DATA" --model diffkg --epochs 1 --patience 1 \
    --device "$DEVICE" --output "$OUTDIR/diffkg-1epoch.json" "${CAP[@]}" "${DIFFKG_CAP[@]}"
step lightgcn-1epoch 60 "$PY" -m diffkg_pyg train "$DATA" --model lightgcn --epochs 1 --patience 1 \
    --device "$DEVICE" --output "$OUTDIR/lightgcn-1epoch.json" "${CAP[@]}"
step speed-step 60 "$PY" benchmarks/speed_step.py --data "$DATA" --model diffkg --device "$DEVICE" \
    --steps "$([ "$SMOKE" = 1 ] && echo 2 || echo 10)" --warmup 2 --compare --floor --output "$OUTDIR/speed-step.jsonl"
GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if { [ "$DEVICE" = cuda ] && [ "$GPUS" -ge 2 ]; } || [ "$DEVICE" = cpu ]; then
    # (On the CPU the same run over gloo: the dry run of this step.)
    step nccl 60 "$PY" -m torch.distributed.run --standalone --nproc-per-node 2 -m diffkg_pyg train synthetic --model diffkg \
        --epochs 1 --max-batches 2 --device "$DEVICE" --output "$OUTDIR/nccl.json" "${DIFFKG_CAP[@]}"
else
    echo "== nccl: skipped ($GPUS GPU(s) on $DEVICE; it needs two)"
    STEPS+=("{\"step\": \"nccl\", \"skipped\": \"$GPUS GPU(s) on $DEVICE\"}")
fi

(IFS=,; echo "[${STEPS[*]}]") | "$PY" -c "
import json, sys
steps = json.load(sys.stdin)
json.dump({'device': '$DEVICE', 'smoke': bool($SMOKE), 'steps': steps}, open('$OUTDIR/summary.json', 'w'), indent=1)
"
echo "gpu_check.sh: $([ "$FAILED" = 0 ] && echo 'every step passed' || echo 'a step failed'); logs in $OUTDIR"
exit "$FAILED"
