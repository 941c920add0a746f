"""How often the diagnostics' top-gap test flags a rare mode, and whether flagged forecasts run low.

For each pool and evaluation size m, every split draws m evaluation scores (synthetic families: from the
family; real pools: from the pool) and computes the gap test of the default fit's diagnostics
(:func:`rarecast.forecasting.diagnostics.top_gap_pvalue` on the k + 1 largest psi). A split is *flagged*
when p < 0.01, the level at which the diagnostics warn. Beside the flag rate it reports how often the default's
worst-query forecast at n = 100 m underestimates the realized maximum of a deployment draw (n capped by the
pool), in flagged and in unflagged splits, and how often its 90% interval covers that maximum. On the mixed
pools (``rare-action-injected`` and ``rare-secret-injected``: 1 query in 1,000 carries a prompt injection), it
also counts the splits whose evaluation drew an injected query.

    python benchmarks/rare_mode_signal.py --splits 200 --out docs/rare-mode-signal.json \
        --markdown docs/rare-mode-signal.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import rarecast as rc
from rarecast.errors import ForecastError, RarecastWarning
from rarecast.evaluation.synthetic import FAMILIES
from rarecast.forecasting.diagnostics import top_gap_pvalue
from rarecast.forecasting.tail.base import resolve_k

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "experiments"), str(ROOT / "experiments" / "rare")]
from common import machine  # noqa: E402
from forecast_accuracy import deployment_max, pool_split  # noqa: E402
from pools import MIXES, read_pool  # noqa: E402

LEVEL = 0.01
SYNTHETIC = ["exponential", "lognormal", "beta", "bounded", "frechet", "rare-mode"]
REAL = ["rare-misuse", "rare-secret", "rare-secret-injected", "rare-action", "rare-action-injected"]


def split(pool: str, m: int, rng: np.random.Generator, real: dict) -> tuple[rc.Scores, float, int]:
    """(evaluation scores, realized deployment maximum p at n = 100 m, what the evaluation drew from the rare
    source: 0 nothing, 1 a query below its maximum, 2 its maximum)."""
    if pool in FAMILIES:
        family = FAMILIES[pool]
        scores = family.sample(rng, m)
        return scores, float(deployment_max(family, np.array([100.0 * m]), rng)[0]), 0
    logp, rare = real[pool]
    evaluation, deployed, n = pool_split(len(logp), m, rng)  # n[0]: the deployment at 100 m
    drew = 2 if rare[evaluation[np.argmax(logp[evaluation])]] else int(rare[evaluation].any())
    return rc.Scores.from_logp(logp[evaluation]), float(np.exp(logp[deployed[: int(n[0])]].max())), drew


def run(pools: list[str], ms: list[int], splits: int) -> list[dict]:
    real = {}
    for pool in pools:
        if pool not in FAMILIES:
            name = pool.removeprefix("rare-")
            logp, _, table = read_pool(name)
            # the queries from a mixed pool's rare source (none in a plain pool)
            rare = (
                np.array(table["source"].to_pylist()) == MIXES[name][1] if name in MIXES else np.zeros(len(logp), bool)
            )
            real[pool] = (logp, rare)
    rows = []
    for pool in pools:
        for m in ms:
            rng = np.random.default_rng([m, len(pool)])
            flags, under, covered, drew_rare = [], [], [], []
            for _ in range(splits):
                scores, truth, rare = split(pool, m, rng, real)
                top = np.sort(scores.psi)[::-1][: resolve_k("auto", m) + 1]
                pvalue = top_gap_pvalue(top)
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RarecastWarning)
                        fit = rc.fit_tail(scores, n_draws=200, seed=0)
                        forecast = fit.worst_query_risk(100 * m)
                        low, high = fit.interval("worst_query_risk", 100 * m, level=0.9)
                except ForecastError:
                    forecast, low, high = 0.0, 1.0, 0.0  # a refused fit underestimates and covers nothing
                flags.append(pvalue is not None and pvalue < LEVEL)
                under.append(float(forecast) < truth)
                covered.append(low <= truth <= high)
                drew_rare.append(rare)
            flags_a, under_a, covered_a, drew = map(np.array, (flags, under, covered, drew_rare))
            top_rare, no_rare = drew == 2, drew == 0
            rows.append(
                {
                    "pool": pool,
                    "m": m,
                    "splits": splits,
                    "flagged": float(flags_a.mean()),
                    "under_when_flagged": float(under_a[flags_a].mean()) if flags_a.any() else None,
                    "under_when_not": float(under_a[~flags_a].mean()) if (~flags_a).any() else None,
                    "covered_when_flagged": float(covered_a[flags_a].mean()) if flags_a.any() else None,
                    "covered_when_not": float(covered_a[~flags_a].mean()) if (~flags_a).any() else None,
                    "drew_rare": int((drew > 0).sum()) if pool in REAL else None,
                    "rare_is_max": int(top_rare.sum()) if pool in REAL else None,
                    "flagged_when_rare_is_max": float(flags_a[top_rare].mean()) if top_rare.any() else None,
                    "flagged_when_none_drawn": float(flags_a[no_rare].mean()) if pool in REAL else None,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown(rows: list[dict], meta: dict) -> str:
    def pct(v):
        return "" if v is None else f"{v:.0%}"

    lines = [
        "# Rare-mode signal: the diagnostics' top-gap test\n",
        f"Generated by `{meta['command']}` on {meta['machine']['cpu']}, {meta['machine']['cpus']} cores "
        f"({meta['date']}, {meta['seconds']:.0f} s). A split is flagged when the gap test's p < {LEVEL} (where "
        "the diagnostics warn). *Under* is how often the default's worst-query forecast at n = 100 m (capped by "
        "a real pool) falls below the realized maximum of a deployment draw; *covered* is how often the default's "
        "90% interval holds that maximum. On the injected pools, 1 query in "
        "1,000 carries a prompt injection; *drew one* counts the splits whose evaluation holds one, *max is one* "
        "those whose largest evaluation score is one.\n",
        "| pool | m | flagged | under when flagged | under when not | covered when flagged | covered when not "
        "| drew one | max is one | flagged when max is one | flagged when none drawn |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['pool']} | {r['m']} | {pct(r['flagged'])} | {pct(r['under_when_flagged'])} | "
            f"{pct(r['under_when_not'])} | {pct(r['covered_when_flagged'])} | {pct(r['covered_when_not'])} | "
            f"{'' if r['drew_rare'] is None else r['drew_rare']} | "
            f"{'' if r['rare_is_max'] is None else r['rare_is_max']} | {pct(r['flagged_when_rare_is_max'])} | "
            f"{pct(r['flagged_when_none_drawn'])} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--splits", type=int, default=200)
    ap.add_argument("--m", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--pools", nargs="+", default=SYNTHETIC + REAL)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()
    start = time.perf_counter()
    rows = run(args.pools, args.m, args.splits)
    meta = {
        "command": "python benchmarks/rare_mode_signal.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "seconds": time.perf_counter() - start,
        "level": LEVEL,
        "rarecast": rc.__version__,
    }
    if args.out:
        args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown(rows, meta))


if __name__ == "__main__":
    main()
