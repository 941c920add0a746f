"""Adaptive vs uniform sampling: forecast error against total samples, on a pool with known probabilities.

No model: each query's p is known (an exponential tail in psi, the family rarecast.evaluation.synthetic calls
"exponential", shifted so that the top few percent of queries have p of a few percent and more), and a
sample is a Bernoulli draw. For each of ``splits`` evaluation sets of m queries:

* uniform: k samples per query, k in UNIFORM_K;
* adaptive (rarecast.elicitation.adaptive): rounds with early stopping, for several ``max_trials`` caps;

then the default count fit (binomial) forecasts the worst-query risk at n = 100 m, scored as the absolute
log10 error against the exact truth. ``sample_reduction`` is the total samples of uniform k = 200 over the
total samples adaptive needs for the same mean error (interpolated along the adaptive curve in log samples).

    python benchmarks/sampling_efficiency.py --quick --out sampling.json --plot docs/img/sampling_efficiency.png
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import numpy as np

import rarecast as rc
from rarecast.elicitation.adaptive import AdaptivePlan, sample_adaptively
from rarecast.errors import ForecastError, RarecastWarning
from rarecast.scores import logp_from_psi, p_from_psi

UNIFORM_K = [10, 20, 50, 100, 200, 400]
ADAPTIVE_CAPS = [25, 50, 100, 200, 400]
PSI_LOC, PSI_SCALE = -2.05, 0.45  # P(psi > x) = exp(-(x - loc) / scale): top 3% of queries have p > 0.2


def pool_psi(rng: np.random.Generator, m: int) -> np.ndarray:
    return PSI_LOC + PSI_SCALE * rng.exponential(size=m)


def true_worst(n: float) -> float:
    """p at the exact top-1/n quantile of the pool."""
    return float(p_from_psi(PSI_LOC + PSI_SCALE * np.log(n)))


def forecast_error(s: np.ndarray, n: np.ndarray, n_deploy: float) -> float:
    """Error of the default count fit's worst-query risk at ``n_deploy`` (nan if the fit refuses).

    Measured as |log10(-ln p_forecast) - log10(-ln p_true)|: the log10 error of p for small p, and still
    informative where the worst query's p approaches 1 (where log10 p itself hides every error).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RarecastWarning)
        try:
            # the count fit forecasts from its posterior draws (the predictive median of the maximum)
            fit = rc.fit_tail(rc.Scores.from_counts(s, n), n_draws=200)
            forecast = -np.log(float(fit.worst_query_risk(n_deploy)))
        except ForecastError:
            return float("nan")
    return abs(float(np.log10(forecast) - np.log10(-np.log(true_worst(n_deploy)))))


def run(m: int, splits: int, seed: int) -> dict:
    """Mean error and mean total samples per arm over ``splits`` evaluation sets."""
    arms: dict[str, dict[str, list[float]]] = {}
    for split in range(splits):
        rng = np.random.default_rng([seed, split])
        p = np.exp(logp_from_psi(pool_psi(rng, m)))
        for k in UNIFORM_K:
            s = rng.binomial(k, p)
            _add(arms, f"uniform k={k}", forecast_error(s, np.full(m, k), 100 * m), k * m)

        def draw(idx, hits, done, new, rng=rng, p=p):
            return rng.binomial(new, p[idx])

        for cap in ADAPTIVE_CAPS:
            s, n = sample_adaptively(np.zeros(m), np.zeros(m), draw, AdaptivePlan(max_trials=cap))
            _add(arms, f"adaptive max={cap}", forecast_error(s, n, 100 * m), int(n.sum()))
    return {
        name: {
            "mean_abs_log10_error": float(np.nanmean(v["err"])),
            "refused": int(np.isnan(v["err"]).sum()),
            "samples": float(np.mean(v["samples"])),
        }
        for name, v in arms.items()
    }


def _add(arms: dict, name: str, err: float, samples: int) -> None:
    arm = arms.setdefault(name, {"err": [], "samples": []})
    arm["err"].append(err)
    arm["samples"].append(samples)


def reduction(table: dict) -> tuple[float, float]:
    """(uniform k=200 samples / adaptive samples at the same error, that adaptive sample count)."""
    target = table["uniform k=200"]["mean_abs_log10_error"]
    curve = sorted((v["samples"], v["mean_abs_log10_error"]) for k, v in table.items() if k.startswith("adaptive"))
    for (s0, e0), (s1, e1) in zip(curve, curve[1:]):
        if e0 <= target:
            return table["uniform k=200"]["samples"] / s0, s0
        if e1 <= target:  # interpolate in log samples between the two points that bracket the target
            frac = (e0 - target) / (e0 - e1)
            needed = float(np.exp(np.log(s0) + frac * (np.log(s1) - np.log(s0))))
            return table["uniform k=200"]["samples"] / needed, needed
    return float("nan"), float("nan")


def plot(table: dict, path: str, m: int, splits: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for prefix, marker in (("uniform", "o"), ("adaptive", "s")):
        pts = sorted((v["samples"], v["mean_abs_log10_error"], k) for k, v in table.items() if k.startswith(prefix))
        ax.plot([q[0] for q in pts], [q[1] for q in pts], marker=marker, label=prefix)
        for x, y, name in pts:
            ax.annotate(name.split(" ")[1], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("total samples (mean over splits)")
    ax.set_ylabel("mean |log10 error| of -ln p (worst query)")
    ax.set_title(f"adaptive vs uniform sampling (m = {m}, {splits} splits)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer splits, about a minute")
    ap.add_argument("--out", help="write the figures as one JSON object")
    ap.add_argument("--plot", help="write the error-vs-samples curve (PNG)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    m, splits = (1000, 12) if args.quick else (1000, 60)
    start = time.perf_counter()
    load0 = os.getloadavg()[0]
    table = run(m, splits, args.seed)
    factor, needed = reduction(table)
    result = {
        "m": m,
        "splits": splits,
        "n_deploy": 100 * m,
        "true_worst_query_risk": true_worst(100 * m),
        "arms": table,
        "adaptive_samples_at_uniform200_error": needed,
        "sample_reduction": factor,
        "seconds": time.perf_counter() - start,
        "load_average_at_start": load0,
    }
    _print(result)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=2)
    if args.plot:
        plot(table, args.plot, m, splits)


def _print(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"sampling efficiency (m = {r['m']}, {r['splits']} splits, n = {r['n_deploy']:,})")
    for col in ("arm", "samples", "mean |log10 error|", "refused"):
        t.add_column(col)
    for name, v in r["arms"].items():
        t.add_row(name, f"{v['samples']:,.0f}", f"{v['mean_abs_log10_error']:.3f}", str(v["refused"]))
    Console().print(t)
    Console().print(f"sample_reduction (uniform k=200 / adaptive at equal error): {r['sample_reduction']:.2f}x")


if __name__ == "__main__":
    main()
