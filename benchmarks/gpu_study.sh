#!/usr/bin/env bash
# One-shot GPU run of issue 14's presets: Table 3 of the scaling study (--preset gpu-table3) and the search study on
# the shapes proxy, both with the data on the GPU. Installs nothing: the machine's python3 with effnet from ./src.
# Each part has its own time limit and writes as it goes, so a timeout keeps the trainings that finished (the study
# resumes with --resume). Results: $OUT/study-gpu/ (report.md states images/s and the device), $OUT/search/, logs.
#   OUT=/tmp/gpu-study STUDY_S=480 SEARCH_S=300 bash benchmarks/gpu_study.sh
set -u
OUT=${OUT:-/tmp/gpu-study}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$OUT/gpu_study.log"
start=$(date +%s)
timeout -s INT "${STUDY_S:-480}" python3 -m effnet study scaling --preset gpu-table3 --parts table3 --no-progress \
  --out-dir "$OUT/study-gpu" 2>&1 | tee -a "$OUT/gpu_study.log"
echo "study exit ${PIPESTATUS[0]} after $(($(date +%s) - start)) s" | tee -a "$OUT/gpu_study.log"
start=$(date +%s)
timeout -s INT "${SEARCH_S:-300}" python3 benchmarks/search_study.py --out "$OUT/search" --work "$OUT/search-work" \
  --trials 16 --batch-size 8 --resolution 64 --classes 4 --epochs 6 --train-samples 1000 --val-samples 1000 \
  --train-batch-size 32 --workers 4 --seeds 0 1 2 3 4 --naswot-candidates 200 --phase search 2>&1 | tail -40 | tee -a "$OUT/gpu_study.log"
echo "search exit ${PIPESTATUS[0]} after $(($(date +%s) - start)) s" | tee -a "$OUT/gpu_study.log"
