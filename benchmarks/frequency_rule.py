"""How the default should read behavior frequency from its posterior draws, against gumbel-ols.

The default's behavior frequency at tau is the mean of S_r(tau) over its draws r (the predictive probability
that a fresh query exceeds tau). A few draws with heavy tails dominate that mean. Their median is exactly 0
whenever most draws end below tau. This scores, on forecast_accuracy.py's splits and truths (its first 24
per (pool, m); tau at the top-1/n quantile, 100x and 1,000x), the mean, the mean without the largest 1%, 2%,
5% or 10% of the draws, and the median. Each is given as its MAE (log10) over gumbel-ols's, with how often it
underestimates. The six exact synthetic families and every exact real pool are scored.

    .venv/bin/python benchmarks/frequency_rule.py > docs/frequency-rule.log
"""

import sys
import warnings
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import forecast_accuracy as fa  # noqa: E402

import rarecast as rc  # noqa: E402
from rarecast.forecasting.risks import behavior_frequency  # noqa: E402

SPLITS = 24
TRIMS = (0.0, 0.01, 0.02, 0.05, 0.1)
RULES = [f"trim {t:.0%}" if t else "mean" for t in TRIMS] + ["median"]


def readings(s: np.ndarray) -> list[float]:
    """Each rule's frequency from the draws' values at one tau."""
    s = np.sort(s)
    return [float(s[: int(round((1 - t) * len(s)))].mean()) for t in TRIMS] + [float(np.median(s))]


def run_task(task) -> tuple[str, np.ndarray]:
    """(pool, errors (splits x multiples, rules + gumbel-ols)) of one (pool, m)."""
    pool, m, logp_pool = task
    warnings.simplefilter("ignore")
    errors = []
    for split in range(SPLITS):
        rng = np.random.default_rng([zlib.crc32(pool.encode()), m, split])  # forecast_accuracy's splits
        scores, truth, _, tau = fa.split_truths(pool, m, rng, logp_pool)
        t = truth["behavior_frequency"]
        values = behavior_frequency(rc.fit_tail(scores, n_draws=400, seed=split).draws(), tau)  # (draws, tau)
        try:
            gumbel = np.atleast_1d(rc.fit_tail(scores, method="gumbel-ols").behavior_frequency(tau))
        except rc.ForecastError:
            gumbel = np.full(len(tau), np.nan)
        for j in range(len(tau)):
            errors.append(fa._err(np.array(readings(values[:, j]) + [gumbel[j]]), t[j]))
    return pool, np.array(errors)


def main() -> None:
    tasks = fa.exact_cells(fa.real_pools())
    errors: dict[str, list[np.ndarray]] = {}
    with ProcessPoolExecutor(2) as ex:
        for pool, e in ex.map(run_task, tasks):
            errors.setdefault(pool, []).append(e)
    print(f"machine: {fa.machine_name()}; {SPLITS} splits per (pool, m); MAE ratio to gumbel-ols (underestimates)")
    print(f"{'pool':22s} {'gumbel-ols MAE':>15s}  " + "  ".join(f"{r:>14s}" for r in RULES))
    for pool, parts in errors.items():
        e = np.concatenate(parts)
        gumbel = np.nanmean(np.abs(e[:, -1]))
        cells = [f"{np.mean(np.abs(e[:, i])) / gumbel:6.2f} ({np.mean(e[:, i] < 0):4.0%})" for i in range(len(RULES))]
        print(f"{pool:22s} {gumbel:8.2f} ({np.mean(e[:, -1] < 0):4.0%})  " + "  ".join(f"{c:>14s}" for c in cells))


if __name__ == "__main__":
    main()
