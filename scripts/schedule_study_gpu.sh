#!/bin/bash
# The schedule study of reports/schedules at its GPU budget: the three schedules trained and
# evaluated in parallel processes on one GPU, then the report written from the merged results.
#   bash scripts/schedule_study_gpu.sh [AID_ROOT]     (default ../shared/data/aid)
# The committed report ran this on one H200 (16 cores) with AID_ROOT = a 64x64 JPEG copy of AID
# made by `python scripts/shrink_images.py ../shared/data/aid data/aid64 --size 64`.
set -euo pipefail
AID=${1:-../shared/data/aid}
WORK=${WORK:-outputs/schedules_gpu}
mkdir -p "$WORK"
pids=()
for s in linear cosine sigmoid; do
  python scripts/schedule_study.py --schedules $s --out "$WORK/$s" --n-fast 500 --n-ddpm 100 \
    --set data.root="$AID" --set output_dir="$WORK/runs/$s" --set train.batch_size=64 \
    --set train.max_steps=3000 --set train.warmup_steps=100 --set train.save_every=500 \
    --set train.num_workers=3 --set evaluate.batch_size=500 > "$WORK/$s.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
python scripts/merge_schedule_runs.py "$WORK" reports/schedules
python scripts/schedule_study.py --out reports/schedules --report-only
