"""Weighting tail families by a backtest inside the evaluation sample, against gpd-bayes alone and gumbel-ols.

One of issue 18's directions. Each evaluation sample is backtested against itself: 12 times, the tail
families are fitted on a random tenth of it (at least 20 queries) and scored by the predictive log density of
the largest of the other queries, the same question the forecast answers, 4x to 9x ahead instead of 100x. The
families are gpd-bayes (the default), a normal psi (the paper's log-normal baseline, with bootstrap draws) and
an exponential tail (xi = 0, the Gumbel-tail assumption, with posterior draws). Their weights are
exp(t * mean log score), normalized: t = 0 is an equal mixture, and a larger t trusts the backtest more.

Each weighting is a mixture of the families' draws, read exactly as the default is: quantiles 0.5 to 0.95 of
the predictive distribution of the deployment maximum, at 100x and 1,000x, on the splits, truths and
matched-underestimation rule of benchmarks/forecast_accuracy.py (its first splits, the same seeds), and its 5%
to 95% interval. Exact pools only (counts use the binomial default, which this does not touch).

    python benchmarks/tail_stacking.py --splits 30 --out docs/tail-stacking.json --markdown docs/tail-stacking.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import forecast_accuracy as fa  # noqa: E402

import rarecast as rc  # noqa: E402
from rarecast.forecasting.risks import max_cdf  # noqa: E402
from rarecast.forecasting.tail import make_estimator  # noqa: E402
from rarecast.scores import logp_from_psi, p_from_psi  # noqa: E402

FAMILIES = ("gpd-bayes", "lognormal", "exponential")  # the first is the default, scored alone too
TEMPERS = (0.25, 0.5, 1.0, 2.0)
BACKTESTS = 12
LEVELS = np.concatenate([[0.05], fa.QUANTILES])  # 0.05 and 0.95 bound the 90% interval


def family_draws(family: str, psi_desc: np.ndarray, n_draws: int, seed: int):
    """Posterior or bootstrap draws of one family fitted to psi, without the ones whose tail does not decay.

    ``family`` is a method name, with settings after a colon: ``"gpd-bayes:k=0.25"``."""
    method, _, settings = family.partition(":")
    scores = rc.Scores.from_logp(logp_from_psi(psi_desc))
    d = make_estimator(method, **fa.estimator_settings(settings)).draws(scores, n_draws, np.random.default_rng(seed))
    return d.take(np.isfinite(d.worst_psi(np.array([1e6]))[:, 0]) & d.decays())


def mixture_quantile(parts: list, weights: np.ndarray, n: np.ndarray, q: np.ndarray) -> np.ndarray:
    """psi that the deployment maximum stays below with probability q under the weighted mixture."""
    lo, hi = np.full(q.shape, -15.0), np.full(q.shape, 60.0)  # p from 1e-1400 to 1 - 1e-26
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        below = sum(w * max_cdf(d, mid, n) for d, w in zip(parts, weights) if w > 0) < q
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def backtest_scores(psi: np.ndarray, families: list[str], rng: np.random.Generator) -> np.ndarray:
    """(BACKTESTS, families) log densities of the held-out maximum, each family fitted on a tenth of psi."""
    m, s = len(psi), max(20, len(psi) // 10)
    n = np.array([m - s], dtype=float)
    out = np.empty((BACKTESTS, len(families)))
    for b in range(BACKTESTS):
        idx = rng.permutation(m)
        fit_on, held_max = np.sort(psi[idx[:s]])[::-1], psi[idx[s:]].max()
        h = 1e-3 * (fit_on[0] - np.median(fit_on)) + 1e-9  # a central difference of the max's cdf
        for c, family in enumerate(families):
            try:
                d = family_draws(family, fit_on, 100, b)
                dens = (max_cdf(d, np.array([held_max + h]), n) - max_cdf(d, np.array([held_max - h]), n))[0]
                out[b, c] = np.log(max(dens / (2 * h), 1e-300))
            except rc.ForecastError:
                out[b, c] = np.log(1e-300)
    return out


def weightings(scores: np.ndarray, families: list[str]) -> dict[str, np.ndarray]:
    """Every weighting scored: the first family alone, each tempered backtest weight, and the equal mixture."""
    alone = np.eye(len(families))[0]
    out = {families[0]: alone, "equal": np.full(len(families), 1 / len(families))}
    mean = scores.mean(axis=0)
    for t in TEMPERS:
        w = np.exp(t * (mean - mean.max()))
        out[f"backtest t={t}"] = w / w.sum()
    return out


def run_task(task) -> list[dict]:
    pool, m, logp_pool, splits, draws, families = task
    rows = []
    warnings.simplefilter("ignore")
    for split in range(splits):
        rng = np.random.default_rng([zlib.crc32(pool.encode()), m, split])  # forecast_accuracy's splits
        scores, truth, n, _ = fa.split_truths(pool, m, rng, logp_pool)
        try:
            gumbel = np.atleast_1d(rc.fit_tail(scores, method="gumbel-ols").worst_query_risk(n)).tolist()
            g_fit = {"worst_query_risk": [gumbel]}
        except rc.ForecastError:
            g_fit = {"refused": True}
        psi = np.sort(scores.psi[np.isfinite(scores.psi)])[::-1]
        parts = [family_draws(f, psi, draws, split) for f in families]
        weights = weightings(backtest_scores(psi, families, np.random.default_rng(split)), families)
        nn, qq = np.tile(n, len(LEVELS)), np.repeat(LEVELS, len(n))
        quant = {
            name: p_from_psi(mixture_quantile(parts, w, nn, qq)).reshape(len(LEVELS), len(n)).tolist()
            for name, w in weights.items()
        }
        rows.append(
            {
                "pool": pool,
                "m": m,
                "split": split,
                "n": n.tolist(),
                "truth": {"worst_query_risk": truth["worst_query_risk"].tolist()},
                "gumbel-ols": g_fit,
                "weights": {k: v.tolist() for k, v in weights.items()},
                "quantiles": quant,
            }
        )
    return rows


def coverage(rows: list[dict], name: str) -> tuple[float, float]:
    """Share of truths inside the 5%-95% predictive interval, and its median width in orders of magnitude."""
    lo = np.array([r["quantiles"][name][0] for r in rows])
    hi = np.array([r["quantiles"][name][-1] for r in rows])
    t = np.array([r["truth"]["worst_query_risk"] for r in rows])
    width = np.log10(np.maximum(hi, fa.FLOOR)) - np.log10(np.maximum(lo, fa.FLOOR))
    return float(np.mean((lo <= t) & (t <= hi))), float(np.median(width))


def summarize(rows: list[dict]) -> dict:
    """Per weighting: forecast_accuracy's matched-underestimation goal, coverage per pool, mean weights."""
    pools = list(dict.fromkeys(r["pool"] for r in rows))
    out = {}
    for name in rows[0]["quantiles"]:
        as_default = [
            {
                "pool": r["pool"],
                "truth": r["truth"],
                "fits": {"gumbel-ols": r["gumbel-ols"], "default": {"quantiles": r["quantiles"][name][1:]}},
            }
            for r in rows
        ]
        by_pool = {p: [r for r in rows if r["pool"] == p] for p in pools}
        out[name] = {
            "goal": fa.matched_quantile(as_default),
            "coverage_and_width": {p: coverage(rs, name) for p, rs in by_pool.items()},
            "mean_weights": {
                p: np.mean([r["weights"][name] for r in rs], axis=0).tolist() for p, rs in by_pool.items()
            },
        }
    return out


def markdown(summary: dict, meta: dict) -> str:
    pools = list(next(iter(summary.values()))["coverage_and_width"])
    lines = [
        "# Weighting tail families by an in-sample backtest\n",
        f"Generated by `{meta['command']}` on {meta['machine']} ({meta['date']}, {meta['seconds']:.0f} s): "
        f"{meta['splits']} splits per (pool, m), {meta['draws']} draws per family, worst-query risk at 100x "
        "and 1,000x, truth the realized deployment maximum. Families, weights and the goal's rule are in the "
        "script's docstring. The MAE ratio is to gumbel-ols at the shared quantile q* whose pooled "
        "underestimation is no higher than gumbel-ols's (goal: geometric mean <= 0.75, every pool <= 1.1). "
        "Coverage is of the 5%-95% predictive interval (goal: 85% to 95% on every pool).\n",
        "\n## Goal by weighting\n",
        "| weighting | q* | underestimates at q* | MAE ratio (geomean) | worst pool | ratio at the median |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        g = s["goal"]
        if g.get("q_star") is None:
            lines.append(f"| {name} | none | | | | |")
            continue
        at_median = np.exp(np.mean(np.log(list(g["mae_ratio_at_median_by_pool"].values()))))
        lines.append(
            f"| {name} | {g['q_star']:.2f} | {g['default_underestimation_at_q_star']:.0%} | "
            f"{g['mae_ratio_geomean']:.2f} | {g['worst_pool']} {g['worst_pool_ratio']:.2f} | {at_median:.2f} |"
        )
    lines += ["\n## MAE ratio at q*, by pool\n", "| pool | " + " | ".join(summary) + " |"]
    lines.append("|---" * (len(summary) + 1) + "|")
    for p in pools:
        cells = [
            format(s["goal"]["mae_ratio_by_pool"][p], ".2f") if s["goal"].get("q_star") else "n/a"
            for s in summary.values()
        ]
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    lines += ["\n## 90% coverage / median width (orders), by pool\n", "| pool | " + " | ".join(summary) + " |"]
    lines.append("|---" * (len(summary) + 1) + "|")
    for p in pools:
        cells = [f"{s['coverage_and_width'][p][0]:.0%} / {s['coverage_and_width'][p][1]:.1f}" for s in summary.values()]
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    name = f"backtest t={TEMPERS[1]}"
    lines += [f"\n## Mean weights ({', '.join(meta['families'])}) of {name}\n", "| pool | weights |", "|---|---|"]
    for p, w in summary[name]["mean_weights"].items():
        lines.append(f"| {p} | " + ", ".join(f"{x:.2f}" for x in w) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--splits", type=int, default=30)
    ap.add_argument("--draws", type=int, default=300)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), help='e.g. gpd-bayes "gpd-bayes:k=0.25"')
    ap.add_argument("--out")
    ap.add_argument("--markdown")
    args = ap.parse_args(argv)
    real = fa.real_pools()
    tasks = [(*cell, args.splits, args.draws, args.families) for cell in fa.exact_cells(real)]
    t0 = time.time()
    rows = fa.run_cells(run_task, tasks, args.jobs)
    summary = summarize(rows)
    meta = {
        "command": "python benchmarks/tail_stacking.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": fa.machine_name(),
        "date": time.strftime("%Y-%m-%d"),
        "splits": args.splits,
        "draws": args.draws,
        "families": args.families,
        "seconds": time.time() - t0,
        "rarecast": rc.__version__,
    }
    print(markdown(summary, meta))
    if args.out:
        Path(args.out).write_text(json.dumps({"meta": meta, "summary": summary, "splits": rows}) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(markdown(summary, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
