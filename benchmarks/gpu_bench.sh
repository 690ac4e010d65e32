#!/usr/bin/env bash
# One-shot GPU bench (CUDA, AMP bf16, channels-last): effnet default/fast paths vs timm and torchvision,
# eager and compiled; training img/s and peak memory; AOT package load; Table 4.
# Installs nothing: uses the machine's python3 (torch, timm, torchvision) with effnet from ./src.
# Results: $OUT/bench.{json,md,png} (rewritten after each section, so a timeout keeps what finished) and $OUT/gpu_bench.log.
#   OUT=/tmp/gpu-bench BUDGET_S=420 bash benchmarks/gpu_bench.sh
set -u
OUT=${OUT:-/tmp/gpu-bench}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export EFFNET_CACHE_DIR=${EFFNET_CACHE_DIR:-/tmp/effnet-cache}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$OUT/gpu_bench.log"
python3 -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))' 2>&1 | tee -a "$OUT/gpu_bench.log"
python3 -c 'import timm; print("timm", timm.__version__)' 2>&1 | tee -a "$OUT/gpu_bench.log"
timeout -s INT "${BUDGET_S:-420}" python3 - "$OUT" <<'PY' 2>&1 | tee -a "$OUT/gpu_bench.log"
import sys, time
import torch
torch.backends.cudnn.benchmark = True
from effnet.experiments.bench import run_all
out = sys.argv[1]
t0 = time.time()
def say(msg):
    print(f"[{time.time() - t0:6.1f}s] {msg}", flush=True)
run_all(
    threads=8, device="cuda", amp="bf16", batch_sizes=(1, 256), resolution=224, warmup=5, repeats=30,
    train_configs=("timm", "timm+compile", "effnet", "effnet+lean", "effnet+compile", "effnet+lean+compile",
                   "torchvision", "torchvision+compile", "effnet+ckpt", "effnet+lean+ckpt"),
    train_batch_size=256, train_warmup=3, train_steps=10, progress=say, out_dir=out,
    order=("inference", "train", "aot_load", "table4"),
)
say("done")
PY
echo "exit $?" | tee -a "$OUT/gpu_bench.log"
