"""Which reading of the default's posterior should be its worst-query forecast, scored against the deployment.

gpd-bayes's posterior can be read three ways at n deployment queries:

* ``mode plug-in``: Q_p(n), the top-1/n quantile of p, of the posterior mode's tail (one point fit);
* ``median of Q_p(n)``: the median over the posterior draws of each draw's Q_p(n), with the draws' 5% to 95%
  range as its interval (the posterior interval of a quantile);
* ``predictive median`` (the default): the median of the predictive distribution of the deployment maximum,
  mean_r (1 - S_r(x))^n = 1/2, with its 5% to 95% points as the interval.

Each is scored, as forecast_accuracy.py scores the default, on that benchmark's own splits (``--splits`` per
(pool, m) from ``--first-split``; the six exact synthetic families at m = 100 and 1,000 and every exact real
pool at m = 100 and 300), at 100x and 1,000x, against the realized maximum of the deployment draw. gumbel-ols
is scored beside them, and each reading's MAE is also given as a ratio to gumbel-ols's on the same splits.

A lower reading has the smaller error and underestimates more often, so the readings are also compared as
forecast_accuracy.py's goal compares the default with gumbel-ols: each reading is widened into a family of
forecasts (its q-quantile, with q from 0.01 to 0.99: of the deployment maximum under the mode's tail, of
Q_p(n) over the draws, or of the predictive maximum), and read at the one quantile q*, shared by every pool,
that underestimates no more often than gumbel-ols does (pools weighted equally; refusals count as
underestimates). A fourth family makes the three risks agree exactly: it treats the n deployment queries as
independent draws from the one-query predictive distribution S(x) = mean_r S_r(x), the distribution whose
survival the default's behavior frequency is, so that S at its Q_p(n) is exactly 1/n.

    .venv/bin/python benchmarks/forecast_reading.py --splits 50 > docs/forecast-reading.log
    .venv/bin/python benchmarks/forecast_reading.py --splits 50 --first-split 50 > docs/forecast-reading-heldout.log
"""

from __future__ import annotations

import argparse
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import forecast_accuracy as fa  # noqa: E402

import rarecast as rc  # noqa: E402
from rarecast.forecasting.risks import max_quantile_psi, worst_query_risk  # noqa: E402
from rarecast.scores import p_from_psi  # noqa: E402

READINGS = ["mode plug-in", "median of Q_p(n)", "predictive median", "gumbel-ols"]
#: The one-parameter families compared at matched underestimation: the q-quantile of the deployment maximum
#: under the mode's tail, of Q_p(n) over the draws, of the predictive maximum, and of the maximum of n queries
#: drawn independently from the one-query predictive.
FAMILY_LABELS = ["maximum under the mode", "Q_p(n) over the draws", "predictive maximum", "one-query predictive"]
QUANTILES = np.round(np.r_[0.01, 0.05, 0.1, 0.2, 0.3, 0.4, np.arange(0.5, 0.96, 0.05), 0.97, 0.99], 2)
LEVEL_ENDS = (0.05, 0.95)
DRAWS = 200


def readings(scores: rc.Scores, n: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One split's forecasts: (reading, [point, low, high], multiple), where the mode plug-in and gumbel-ols
    have no interval, and (family, quantile, multiple) for the matched comparison."""
    out = np.full((len(READINGS), 3, len(n)), np.nan)
    fit = rc.fit_tail(scores, n_draws=DRAWS, seed=seed)
    out[0, 0] = worst_query_risk(fit.model, n)[0]
    plug_ins = worst_query_risk(fit.draws(), n)
    out[1] = np.quantile(plug_ins, [0.5, *LEVEL_ENDS], axis=0)
    out[2, 0] = fit.worst_query_risk(n)
    out[2, 1:] = fit.interval("worst_query_risk", n)
    try:
        out[3, 0] = rc.fit_tail(scores, method="gumbel-ols").worst_query_risk(n)
    except rc.ForecastError:
        pass  # a refusal stays NaN and counts as a failure
    # every (quantile, multiple) pair in one bisection per family: q varies along rows, n along columns
    q, n_q = np.repeat(QUANTILES, len(n)), np.tile(n, len(QUANTILES))
    family = np.stack(
        [
            p_from_psi(max_quantile_psi(fit.model, n_q, q)).reshape(len(QUANTILES), len(n)),
            np.quantile(plug_ins, QUANTILES, axis=0),
            p_from_psi(max_quantile_psi(fit.draws(), n_q, q)).reshape(len(QUANTILES), len(n)),
            # n independent queries from the one-query predictive S(x) = mean_r S_r(x): P(max <= x) = q where
            # S(x) = 1 - q^(1/n), i.e. where the one-query maximum's mixed CDF is q^(1/n)
            p_from_psi(max_quantile_psi(fit.draws(), np.ones_like(n_q), np.exp(np.log(q) / n_q))).reshape(
                len(QUANTILES), len(n)
            ),
        ]
    )
    return out, family


def run_task(task) -> list[dict]:
    """(pool, readings, quantile families, truths) of every split of one (pool, m)."""
    pool, m, splits, logp_pool = task
    warnings.simplefilter("ignore")
    rows = []
    for split in splits:
        rng = np.random.default_rng([zlib.crc32(pool.encode()), m, split])  # forecast_accuracy's splits
        scores, truth, n, _ = fa.split_truths(pool, m, rng, logp_pool)
        values, family = readings(scores, n, split)
        rows.append({"pool": pool, "values": values, "family": family, "truth": truth["worst_query_risk"]})
    return rows


def pool_line(pool: str, rows: list[dict]) -> str:
    """MAE (log10), its ratio to gumbel-ols's, underestimation and 90% coverage of each reading on one pool."""
    values = np.stack([r["values"] for r in rows])  # (split, reading, 3, multiple)
    truth = np.stack([r["truth"] for r in rows])[:, None, :]
    err = fa._err(values[:, :, 0], truth)
    fitted = ~np.isnan(err).any(axis=(1, 2))  # splits where every reading fitted, for the MAE
    mae = np.abs(err[fitted]).mean(axis=(0, 2))
    under = np.mean(np.nan_to_num(err, nan=-99) < 0, axis=(0, 2))
    covered = (values[:, :, 1] <= truth) & (truth <= values[:, :, 2])
    cells = []
    for i in range(len(READINGS)):
        cover = f"{covered[:, i].mean():4.0%}" if not np.isnan(values[:, i, 1]).all() else "   -"
        cells.append(f"{mae[i]:5.2f} {mae[i] / mae[-1]:5.2f}x {under[i]:4.0%} {cover}")
    return f"{pool:22s} " + " | ".join(cells)


def matched_lines(rows: list[dict]) -> list[str]:
    """For each reading's family, forecast_accuracy's goal: the smallest shared quantile whose underestimation
    (pools weighted equally) is at most gumbel-ols's, and there the geometric mean and worst MAE ratio."""
    pools = list(dict.fromkeys(r["pool"] for r in rows))
    gumbel_under, under, ratio = [], [], []
    for pool in pools:
        rs = [r for r in rows if r["pool"] == pool]
        truth = np.stack([r["truth"] for r in rs])
        gumbel = fa._err(np.stack([r["values"][3, 0] for r in rs]), truth)  # (split, multiple)
        family = fa._err(np.stack([r["family"] for r in rs]), truth[:, None, None, :])  # (split, fam, q, mult)
        ok = ~np.isnan(gumbel).any(axis=1) & ~np.isnan(family).any(axis=(1, 2, 3))
        gumbel_under.append(np.mean(np.nan_to_num(gumbel, nan=-99) < 0))
        under.append(np.mean(family < 0, axis=(0, 3)))
        ratio.append(np.mean(np.abs(family[ok]), axis=(0, 3)) / np.mean(np.abs(gumbel[ok])))
    target, under_mean, ratio_arr = float(np.mean(gumbel_under)), np.mean(under, axis=0), np.array(ratio)
    lines = [f"gumbel-ols underestimates {target:.1%} (pools weighted equally)"]
    for f, label in enumerate(FAMILY_LABELS):
        i = fa.matched_index(under_mean[f], target)
        if i is None:
            lines.append(f"{label:24s} no quantile up to {QUANTILES[-1]} underestimates as rarely")
            continue
        by_pool = ratio_arr[:, f, i]
        worst = int(np.argmax(by_pool))
        lines.append(
            f"{label:24s} q* = {QUANTILES[i]:.2f}: underestimates {under_mean[f, i]:.1%}, MAE ratio geomean "
            f"{np.exp(np.mean(np.log(by_pool))):.2f}x, worst {by_pool[worst]:.2f}x ({pools[worst]})"
        )
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=24, help="splits per (pool, m)")
    parser.add_argument("--first-split", type=int, default=0, help="index of the first split (a held-out block)")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    splits = range(args.first_split, args.first_split + args.splits)
    tasks = [(pool, m, splits, logp) for pool, m, logp in fa.exact_cells(fa.real_pools())]
    rows = fa.run_cells(run_task, tasks, args.jobs)
    block = f" from split {args.first_split}" if args.first_split else ""
    print(f"machine: {fa.machine_name()}; {args.splits} splits per (pool, m){block}, {DRAWS} draws per fit")
    print("worst-query risk at 100x and 1,000x, truth the realized deployment maximum; per reading:")
    print("MAE log10, its ratio to gumbel-ols's on the same splits, underestimation, 90% coverage")
    print(f"{'pool':22s} " + " | ".join(f"{r:>24s}" for r in READINGS))
    for pool in dict.fromkeys(r["pool"] for r in rows):
        print(pool_line(pool, [r for r in rows if r["pool"] == pool]))
    print()
    print("At matched underestimation: each reading's family read at one shared quantile q*")
    print("\n".join(matched_lines(rows)))


if __name__ == "__main__":
    main()
