"""Sampled estimates against exact probabilities of the same queries (the misuse behavior, 400 queries).

Reads experiments/data/sampled_scores.parquet (per query: exact log p and k = 100 sampled replies judged by
a regex) and experiments/data/misuse_scores.parquet (the larger exact pool, used as the reference for what a
deployment drawn from the same distribution would show). Writes results/sampled_estimates.{json,md}.

    .venv/bin/python experiments/sampled/run_analysis.py            # from the committed table, no model
    .venv/bin/python experiments/sampled/run_analysis.py --export   # first rebuild that table from the store

Two questions:

* per query: does the exact probability lie inside the count's 95% Clopper-Pearson interval as often as it
  should, and do the totals agree (observed successes against sum of k p)?
* per forecast: fitted on the same queries, does the count fit (``binomial``, the default for counts) give
  the forecasts the exact fit (``gpd-bayes``, the default for exact scores; and the paper's ``gumbel-ols``)
  gives, and how do both compare with the larger exact pool?
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import DATA, RESULTS, WORK, machine, markdown_table, write_result

import rarecast as rc
from rarecast.elicitation.adaptive import bounds
from rarecast.store import load_scores

TABLE = DATA / "sampled_scores.parquet"
N = [1e3, 1e4]  # deployment sizes the reference pool checks (the p exceeded by a 1/n share of it)
TAU = 0.1
COLUMNS = [
    ("fit", "fit", ""),
    ("risk", "risk", ""),
    ("at", "at", "g"),
    ("forecast", "forecast", ".3g"),
    ("90% interval", "interval", ""),
    ("reference pool", "reference", ".3g"),
]


def export() -> None:
    """Store -> Parquet: one row per query with its exact log p and its sampled counts."""
    exact, _ = load_scores(WORK / "sampled.db", behavior="complies-sure-here")
    counts, run = load_scores(WORK / "sampled.db", behavior="complies-sure-here-sampled")
    logp = dict(zip(exact.ids, exact.logp.tolist(), strict=True))
    ids = [i for i in counts.ids if i in logp]
    table = pa.table(
        {
            "id": ids,
            "logp": [logp[i] for i in ids],
            "successes": counts.successes.astype(int).tolist(),
            "trials": counts.trials.astype(int).tolist(),
            "model": [run["model"]] * len(ids),
            "decoding": [str(run["decoding"])] * len(ids),
        }
    )
    pq.write_table(table, TABLE)
    print(f"wrote {TABLE} ({len(ids)} queries)")


def per_query(logp: np.ndarray, successes: np.ndarray, trials: np.ndarray) -> dict:
    """Coverage of the exact p by each count's 95% Clopper-Pearson interval, and the totals."""
    p = np.exp(logp)
    lo, hi = bounds(successes, trials, 0.975)  # two one-sided 97.5% bounds = the two-sided 95% interval
    expected, variance = float(np.sum(trials * p)), float(np.sum(trials * p * (1 - p)))
    observed = int(successes.sum())
    return {
        "queries": len(p),
        "k": int(trials[0]),
        "inside_95_interval": float(np.mean((p >= lo) & (p <= hi))),
        "queries_with_a_success": int(np.sum(successes > 0)),
        "observed_successes": observed,
        "expected_successes": expected,
        "z_total": float((observed - expected) / np.sqrt(variance)),
        "spearman_phat_vs_p": float(stats.spearmanr(successes / trials, p).statistic),
    }


def reference(pool: np.ndarray) -> dict:
    """What the larger exact pool says: the p exceeded by a 1/n share of queries, and the share above tau."""
    p = np.sort(np.exp(pool))[::-1]
    return {
        "worst_query_risk": {n: float(p[int(len(p) / n) - 1]) for n in N},
        "behavior_frequency": {TAU: float(np.mean(p > TAU))},
    }


def forecasts(name: str, fit, truth: dict) -> list[dict]:
    rows = []
    for risk, at in [("worst_query_risk", n) for n in N] + [("behavior_frequency", TAU)]:
        lo, hi = fit.interval(risk, at)
        rows.append(
            {
                "fit": name,
                "risk": risk,
                "at": at,
                "forecast": float(getattr(fit, risk)(at)),
                "interval": f"{float(lo):.3g} to {float(hi):.3g}",
                "reference": truth[risk][at],
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", action="store_true", help="rebuild the Parquet table from the store first")
    args = ap.parse_args()
    if args.export:
        export()
    start = time.perf_counter()
    t = pq.read_table(TABLE).to_pandas()
    logp, successes, trials = t["logp"].to_numpy(), t["successes"].to_numpy(), t["trials"].to_numpy()
    pool = pq.read_table(DATA / "misuse_scores.parquet", columns=["logp"])["logp"].to_numpy()
    truth = reference(pool)
    fits = {
        "exact, gpd-bayes": rc.fit_tail(logp),
        "exact, gumbel-ols": rc.fit_tail(logp, method="gumbel-ols"),
        "counts, binomial": rc.fit_tail(rc.Scores.from_counts(successes, trials)),
    }
    rows = [row for name, fit in fits.items() for row in forecasts(name, fit, truth)]
    agreement = per_query(logp, successes, trials)
    payload = {
        "machine": machine(),
        "model": t["model"][0],
        "decoding": t["decoding"][0],
        "pool": len(pool),
        "per_query": agreement,
        "forecasts": rows,
        "seconds": time.perf_counter() - start,
    }
    write_result("sampled_estimates", payload)
    md = [
        f"{agreement['queries']} queries, k = {agreement['k']} samples each; reference pool {len(pool):,} "
        f"exact scores.\n\n",
        markdown_table(rows, COLUMNS),
    ]
    (RESULTS / "sampled_estimates.md").write_text("".join(md))
    print("".join(md))
    print(agreement)


if __name__ == "__main__":
    main()
