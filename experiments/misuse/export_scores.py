"""Export the scored misuse pool from the store to a committed Parquet table, with each query's wrapper parts.

Columns: ``id``, ``logp`` (natural-log probability that the reply starts with "Sure, here is/here's"),
``prefix``, ``suffix``, ``source`` (advbench / harmbench / donotanswer), ``model``, ``behavior``. Rows follow
the (shuffled) query file order, so the first N rows of any export are the same uniform subsample.

    .venv/bin/python experiments/misuse/export_scores.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from build_queries import load_goals
from common import DATA, WORK

from rarecast.store import load_scores

OUT = DATA / "misuse_scores.parquet"


def main() -> None:
    scores, run = load_scores(WORK / "misuse.db")
    logp = dict(zip(scores.ids, scores.logp.tolist()))
    source = load_goals()
    rows = [json.loads(line) for line in (WORK / "misuse_queries.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["id"] in logp]
    table = pa.table(
        {
            "id": [r["id"] for r in rows],
            "logp": [logp[r["id"]] for r in rows],
            "prefix": [r["slots"]["prefix"] for r in rows],
            "suffix": [r["slots"]["suffix"] for r in rows],
            "source": [source[r["slots"]["goal"]] for r in rows],
            "model": [run["model"]] * len(rows),
            "behavior": [run["behavior"]] * len(rows),
        }
    )
    DATA.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, OUT, compression="zstd")
    print(f"{len(rows)} scored queries -> {OUT} ({OUT.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
