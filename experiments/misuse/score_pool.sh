#!/usr/bin/env bash
# Score the misuse pool with the embedded SmolLM2-135M-Instruct (bf16 for throughput) into a resumable store.
# Runs in the background at low priority with one thread (on a busy shared machine, two OpenMP threads spin
# against other jobs and score several times slower; THREADS=2 on an idle machine); rerun to resume. Stop it with: kill "$(cat experiments/work/misuse_score.pid)"
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p experiments/work
[ -f experiments/work/misuse_queries.jsonl ] || .venv/bin/python experiments/misuse/build_queries.py
THREADS=${THREADS:-1}
OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS nohup nice -n 10 .venv/bin/rarecast score experiments/work/misuse_queries.jsonl --model hf:smollm2 --dtype bf16 \
  --behavior experiments/misuse/behavior.yaml --store experiments/work/misuse.db --chunk-size 128 --no-progress \
  >> experiments/work/misuse_score.log 2>&1 &
echo $! > experiments/work/misuse_score.pid
echo "scoring in the background, pid $(cat experiments/work/misuse_score.pid), log experiments/work/misuse_score.log"
