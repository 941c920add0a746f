"""Does the count default stay right as the number of samples per query grows?

The same queries (the exponential-k500 family's distribution of p, m = 1,000) are sampled with 100, 500,
2,000 and 10,000 trials each, and the count default (binomial) forecasts worst-query risk at n = 1e5 (100x).
More trials resolve each query's p better, so a sound fit's error must not drift with them; a tail integral
that misses the narrow likelihoods of well-sampled queries would (see docs/choices.md, "Sampled estimates").
Each split draws one set of p, its deployment maximum (the truth), and binomial counts at every number of
trials; the log10 error of each forecast is listed per split, with the median and spread.

    .venv/bin/python benchmarks/many_trials.py > docs/many-trials.log
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import forecast_accuracy as fa  # noqa: E402

import rarecast as rc  # noqa: E402
from rarecast.evaluation.synthetic import FAMILIES  # noqa: E402
from rarecast.scores import p_from_psi  # noqa: E402

FAMILY = "exponential-k500"
TRIALS = (100, 500, 2000, 10000)
M, N = 1000, 1e5


def split_errors(split: int) -> list[float]:
    """log10(forecast / realized maximum) at each number of trials, on one draw of m queries' p."""
    rng = np.random.default_rng([split, M])
    family = FAMILIES[FAMILY]
    p = p_from_psi(family.sample_psi(rng, M))
    truth = fa.deployment_max(family, np.array([N]), rng)[0]
    errors = []
    for trials in TRIALS:
        counts = rc.Scores.from_counts(rng.binomial(trials, p), np.full(M, trials))
        try:
            forecast = float(rc.fit_tail(counts, n_draws=200, seed=split).worst_query_risk(N))
        except rc.ForecastError:
            forecast = np.nan  # a refusal
        errors.append(float(np.log10(forecast / truth)))
    return errors


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=20)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    print(f"machine: {fa.machine_name()}; family {FAMILY}'s p, m = {M}, n = {N:g}, {args.splits} splits")
    print("log10(forecast / realized deployment maximum) of the count default, by trials per query")
    print(f"{'split':>5s} " + " ".join(f"{t:>8d}" for t in TRIALS))
    rows = []
    for split in range(args.splits):
        rows.append(split_errors(split))
        print(f"{split:5d} " + " ".join(f"{e:8.2f}" for e in rows[-1]), flush=True)
    errors = np.array(rows)
    for name, stat in (("median", np.nanmedian), ("min", np.nanmin), ("max", np.nanmax)):
        print(f"{name:>6s}" + " ".join(f"{v:8.2f}" for v in stat(errors, axis=0)))
    print(f"{'MAE':>6s}" + " ".join(f"{v:8.2f}" for v in np.nanmean(np.abs(errors), axis=0)))
    print(f"{'refused':>6s}" + " ".join(f"{v:8.0%}" for v in np.isnan(errors).mean(axis=0)))


if __name__ == "__main__":
    main()
