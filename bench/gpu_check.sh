#!/usr/bin/env bash
# One prepared GPU check: run it first whenever a session is lent a CUDA device, and paste
# its output (with the card's name) into the issue note and the README.
#
#     bash bench/gpu_check.sh [OUT_DIR]          # about 6-8 minutes on one data-centre GPU
#
# It installs nothing beyond `pip install -e .` into ./.venv-gpu (the machine's own CUDA
# torch when one is installed, else the CUDA build from PyPI), then prints every GPU figure
# the README promises, each step under its own time limit so that one slow step cannot eat
# the others' time:
#   1. the card, driver and torch build;
#   2. DPED training it/s, optimised vs plain fp32 eager, batch 50, and the 20,000-iteration
#      time it implies (bench/train.py), also with torch.compile;
#   3. learned-ISP training steps/s per level, PyNET and MicroISP at the published batch sizes
#      (bench/train.py --isp);
#   4. enhance of a 12 MP photo: fp16 (dpedkit's default on CUDA) and fp32, seconds and peak memory;
#   5. a 2,000-iteration DPED run on the demo data: its test PSNR/SSIM curve (metrics.csv).
#
# DEVICE=cpu QUICK=1 bash bench/gpu_check.sh /tmp/x   checks the script itself on a CPU (tiny sizes).
set -u
OUT=${1:-gpu_check_out}
DEVICE=${DEVICE:-cuda}
if [ "${QUICK:-0}" = 1 ]; then ITERS=2; BATCH=4; MP=0.5; DEMO_ITERS=4; else ITERS=50; BATCH=50; MP=12; DEMO_ITERS=2000; fi
mkdir -p "$OUT"
PY=${PY:-python3}
if [ -n "${VENV:-}" ]; then mkdir -p .venv-gpu/bin && ln -sf "$VENV/bin/python" .venv-gpu/bin/python && ln -sf "$VENV/bin/dpedkit" .venv-gpu/bin/dpedkit; fi
if [ ! -x .venv-gpu/bin/python ]; then
    $PY -m venv --system-site-packages .venv-gpu && .venv-gpu/bin/pip install -q -e . >"$OUT/pip.log" 2>&1 \
        || { echo "install failed: see $OUT/pip.log"; exit 2; }
fi
P=.venv-gpu/bin/python
step() {   # step SECONDS TITLE COMMAND...
    local limit=$1 title=$2; shift 2
    echo; echo "== $title (limit ${limit}s)"
    local t0=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee -a "$OUT/log.txt" | grep -v "^WARNING"
    echo "   [$title: rc ${PIPESTATUS[0]}, $((SECONDS - t0)) s]"
}
step 30 "device" $P -c "import torch; print(torch.__version__, 'CUDA', torch.version.cuda); \
print(torch.cuda.get_device_name(0), round(torch.cuda.get_device_properties(0).total_memory / 2**30), 'GiB') \
if torch.cuda.is_available() else print('no CUDA device: figures below are the CPU\'s')"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null | tee -a "$OUT/log.txt"
step 120 "DPED training, batch $BATCH" $P bench/train.py --device $DEVICE --iters $ITERS --batch-size $BATCH
step 150 "DPED training, batch $BATCH, torch.compile" $P bench/train.py --device $DEVICE --iters $ITERS --batch-size $BATCH --compile
if [ "${QUICK:-0}" = 1 ]; then ISP="--isp-side 64 --isp-batch 2 --pynet-width 4"; else ISP="--isp-side 448"; fi
step 150 "learned ISP training per level (published batches)" $P bench/train.py --device $DEVICE --isp $ISP --iters 3
step 90 "enhance $MP MP" $P bench/enhance.py --device $DEVICE --megapixels $MP --methods "plain fp32,dpedkit fp32,dpedkit fast"
step 240 "$DEMO_ITERS-iteration DPED run on the demo data" .venv-gpu/bin/dpedkit demo "$OUT/demo" --train-iters $DEMO_ITERS --batch-size $BATCH --test-patches 50
echo; echo "== test PSNR curve of the $DEMO_ITERS-iteration run"
$P - "$OUT/demo/runs/demo/metrics.csv" <<'PYEOF'
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r.get("test_psnr")]
for r in rows:
    print(f"iter {int(r['iteration']):>5}: test PSNR {float(r['test_psnr']):6.2f} dB, SSIM {float(r.get('test_ssim') or 'nan'):.4f}")
PYEOF
