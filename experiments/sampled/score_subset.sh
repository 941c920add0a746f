#!/usr/bin/env bash
# Score the first 400 misuse queries (a uniform random subsample: the pool file is shuffled) twice with the
# embedded model in fp32: exactly (teacher forcing) and by sampling k = 100 replies each with a regex grader.
# Resumable; about 10 minutes on 2 idle cores. Then: .venv/bin/python experiments/sampled/run_analysis.py --export
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p experiments/work
[ -f experiments/work/misuse_queries.jsonl ] || .venv/bin/python experiments/misuse/build_queries.py
head -n 400 experiments/work/misuse_queries.jsonl > experiments/work/sampled_queries.jsonl
for behavior in experiments/misuse/behavior.yaml experiments/sampled/behavior.yaml; do
  .venv/bin/rarecast score experiments/work/sampled_queries.jsonl --model hf:smollm2 --behavior "$behavior" \
    --store experiments/work/sampled.db --no-progress
done
