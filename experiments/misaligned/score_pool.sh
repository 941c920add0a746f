#!/usr/bin/env bash
# Build the misaligned-action query set (12 domains x 8 tones x 3 specificity levels x 30 questions = 8,640)
# and score it with the embedded SmolLM2-135M-Instruct (bf16) into a resumable store, in the background at low
# priority with one thread. Rerun to resume. Stop it with: kill "$(cat experiments/work/misaligned_score.pid)"
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p experiments/work
[ -f experiments/work/misaligned_queries.jsonl ] || .venv/bin/python -c "
import random
from rarecast.query_building import build_queries, load_spec, write_queries
qs, report = build_queries(load_spec('experiments/misaligned/queries.yaml'))
random.Random(0).shuffle(qs)  # any scored prefix is a uniform random subsample
write_queries(qs, 'experiments/work/misaligned_queries.jsonl')
print(report.to_dict())"
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nohup nice -n 10 .venv/bin/rarecast score experiments/work/misaligned_queries.jsonl \
  --model hf:smollm2 --dtype bf16 --behavior experiments/misaligned/behavior.yaml \
  --store experiments/work/misaligned.db --chunk-size 64 --no-progress >> experiments/work/misaligned_score.log 2>&1 &
echo $! > experiments/work/misaligned_score.pid
echo "scoring in the background, pid $(cat experiments/work/misaligned_score.pid), log experiments/work/misaligned_score.log"
