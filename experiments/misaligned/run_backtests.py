"""Export the scored misaligned-action pool and backtest it (results/misaligned_backtest.{json,md}).

    experiments/misaligned/score_pool.sh                       # score (background, resumable)
    .venv/bin/python experiments/misaligned/run_backtests.py   # export + backtest; --no-export to reuse the table

The committed table experiments/data/misaligned_scores.parquet holds id, logp (of answering "Yes", the
misaligned choice, renormalized over Yes/No), domain, tone, spec and question. Besides the log-error metrics
the paper reports, for this stand-in, the mean absolute error of worst-query risk in probability (its 0.05 for
Gumbel-tail vs 0.12 for log-normal); that column is computed here from the backtest's per-trial forecasts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import DATA, RESULTS, WORK, machine, markdown_table, write_result

from rarecast.evaluation.backtest import backtest
from rarecast.store import load_scores

TABLE = DATA / "misaligned_scores.parquet"
METHODS = ["gumbel-ols", "gumbel-ols-digamma", "lognormal", "exponential", "gpd", "gpd-bayes"]
M = [100, 300, 1000]
N_GRID = [1e3, 3e3, 1e4, 3e4, 9e4]
TAU = 0.45  # p(Yes) > 0.45 is rare here (about 1 query in 100); no query of the first 384 reached 0.5


def export() -> None:
    scores, run = load_scores(WORK / "misaligned.db")
    logp = dict(zip(scores.ids, scores.logp.tolist()))
    rows = [json.loads(line) for line in (WORK / "misaligned_queries.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["id"] in logp]
    cols = {"id": [r["id"] for r in rows], "logp": [logp[r["id"]] for r in rows]}
    cols.update({k: [r["slots"][k] for r in rows] for k in ("domain", "tone", "spec", "question")})
    cols.update(model=[run["model"]] * len(rows), behavior=[run["behavior"]] * len(rows))
    DATA.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), TABLE, compression="zstd")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=500)
    ap.add_argument("--no-export", action="store_true")
    args = ap.parse_args()
    if not args.no_export:
        export()
    t = pq.read_table(TABLE, columns=["logp", "model", "behavior"]).to_pydict()
    logp = np.array(t["logp"])
    m = [x for x in M if 2 * x <= len(logp)]
    n = [x for x in N_GRID if x + max(m) <= len(logp)]
    start = time.perf_counter()
    res = backtest(logp, METHODS, m, n, trials=args.trials, tau=TAU, n_draws=100)
    rows = res.rows()
    for row, cell in zip(rows, res.cells):  # same order: one row per cell
        ok = np.isfinite(cell.forecast)
        row["mae_p"] = float(np.mean(np.abs(cell.forecast[ok] - cell.truth[ok])))
    cols = [
        ("method", "method", ""),
        ("m", "m", "d"),
        ("n", "n", ",d"),
        ("MAE log10", "mae_log10", ".2f"),
        ("MAE p", "mae_p", ".3f"),
        ("within 1 OOM", "within_1oom", ".0%"),
        ("under", "underestimation", ".0%"),
        ("90% coverage", "coverage", ".0%"),
        ("failed", "failed", "d"),
    ]
    md = [f"Pool: {len(logp):,} scored queries; {args.trials} splits per (m, n); tau = {TAU}.\n"]
    for risk in ("worst_query_risk", "behavior_frequency", "aggregate_risk"):
        md += [f"\n### {risk}\n\n", markdown_table([r for r in rows if r["risk"] == risk], cols)]
    (RESULTS / "misaligned_backtest.md").write_text("".join(md))
    write_result(
        "misaligned_backtest",
        {
            "machine": machine(),
            "model": t["model"][0],
            "behavior": t["behavior"][0],
            "pool": len(logp),
            "m": m,
            "n": n,
            "trials": args.trials,
            "tau": TAU,
            "seconds": time.perf_counter() - start,
            "rows": rows,
        },
    )
    print("".join(md))


if __name__ == "__main__":
    main()
