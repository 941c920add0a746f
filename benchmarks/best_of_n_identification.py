"""What the counts alone say about ASR@N: the range of ASR@N that no distribution of p can be ruled out on.

benchmarks/best_of_n.py asks rarecast's best-of-N intervals to cover the exact ASR@N 85% to 95% of the time on
every family. This script measures how much of that the counts decide and how much the model's assumptions
decide. On the same counts as best_of_n.py (same families, repetitions, queries and attempts) it computes the
*nonparametric likelihood-ratio range* of ASR@N: the smallest and largest ASR@N of any distribution of p
(on a fine logit grid, with no shape imposed) whose binomial log-likelihood is within chi2_1(0.9) / 2 of the
largest any distribution reaches (the nonparametric maximum likelihood estimate). It is the profile-likelihood
90% confidence interval for ASR@N under the only assumptions of the setting: queries drawn independently from
one distribution of p, attempts independent Bernoulli(p).

Each end is a convex problem (a linear objective over the simplex of grid masses, a concave constraint on the
log-likelihood), solved by CVXPY with the Clarabel interior-point solver. Grid points where every query's
likelihood is below 1e-8 of its largest are left out: mass there costs about m log-likelihood units per unit,
so it could move ASR@N by at most chi2_1(0.9) / (2 m), 0.003 at m = 500.

Beside the range the script fits rarecast (:func:`rarecast.fit_best_of_n`, the benchmark's settings and seeds)
and reports where its 90% interval and the exact truth fall inside the range. A truth near an end of a wide
range means only the model's assumption about the unseen low end of p can put an interval around it.

CVXPY and Clarabel are benchmark-only extras: ``pip install 'rarecast[bench]'``.

    python benchmarks/best_of_n_identification.py --reps 50 --workers 2 \\
        --out docs/best-of-n-identification.json --markdown docs/best-of-n-identification.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from datetime import date
from pathlib import Path

import numpy as np
from scipy import stats
from scipy.special import log_expit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import best_of_n as bon  # noqa: E402
import forecast_accuracy as fa  # noqa: E402

from rarecast.forecasting.best_of_n import _Likelihood  # noqa: E402
from rarecast.scores import Scores  # noqa: E402

#: Level of the likelihood-ratio range, and the log-likelihood drop it allows.
LEVEL = 0.9
DROP = float(stats.chi2.ppf(LEVEL, 1)) / 2
#: The logit-p grid the distributions live on. Its floor, p ~ 2e-9, breaks with probability 2e-5 in 10,000
#: attempts, so a lower floor would move no end by more; with rarecast's floor (p ~ 1e-12) the solver failed more
#: often on the many grid points whose likelihoods are all but equal.
GRID = np.linspace(-20.0, 10.0, 200)
#: Grid points whose likelihood is below this share of each query's largest are left out (see the docstring).
NEGLIGIBLE = 1e-8


def _cvxpy():
    try:
        import cvxpy
    except ImportError:
        sys.exit("this benchmark solves convex problems: pip install 'rarecast[bench]' (cvxpy-base, clarabel)")
    return cvxpy


def _solve(problem) -> tuple[float, bool]:
    """The problem's optimal value by Clarabel, and whether Clarabel called it accurate. If it fails or reports
    an inaccurate solution, once more with its equilibration (a rescaling of the constraints) off; an inaccurate
    second answer is kept and flagged, a second failure raises SolverError."""
    cp = _cvxpy()
    for settings in ({}, {"equilibrate_enable": False}):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "solution may be inaccurate": the status says so
                problem.solve(solver="CLARABEL", **settings)
        except cp.error.SolverError:
            continue
        if problem.status == cp.OPTIMAL:
            return float(problem.value), True
    if problem.status == cp.OPTIMAL_INACCURATE:
        return float(problem.value), False
    raise cp.error.SolverError(f"Clarabel: {problem.status}")


def identified_range(s: np.ndarray, k: int, attempts: tuple[int, ...]) -> dict[str, list[float]]:
    """The likelihood-ratio range's ends, ``{"low": [...], "high": [...]}`` with one entry per N, and
    ``"accurate"``: whether Clarabel called every solve accurate.

    The log-likelihood enters per query (divided by m): with the sum, whose scale grows with m, Clarabel failed
    on 2 of 4 trial repetitions."""
    cp = _cvxpy()
    lik = _Likelihood(Scores.from_counts(s, np.full(len(s), k)), GRID)  # rarecast's binomial likelihood
    keep = lik.scaled.max(axis=0) > NEGLIGIBLE
    scaled, logit, share = lik.scaled[:, keep], GRID[keep], lik.count / lik.count.sum()
    w = cp.Variable(len(logit), nonneg=True)
    fit = share @ cp.log(scaled @ w)
    best, accurate = _solve(cp.Problem(cp.Maximize(fit), [cp.sum(w) == 1]))
    out: dict = {"low": [], "high": []}
    for n in attempts:
        asr = -np.expm1(n * log_expit(-logit))
        for end, sense in (("low", cp.Minimize), ("high", cp.Maximize)):
            value, ok = _solve(cp.Problem(sense(asr @ w), [cp.sum(w) == 1, fit >= best - DROP / len(s)]))
            out[end].append(value)
            accurate &= ok
    out["accurate"] = accurate
    return out


def _one(job: tuple) -> list[dict]:
    """The range and rarecast's interval on one repetition's counts."""
    name, rep, m, k, n_draws = job
    import rarecast as rc

    s = bon.counts(name, rep, m, k)
    row: dict = {"family": name, "rep": rep}
    try:
        row["range"] = identified_range(s, k, bon.ATTEMPTS_N)
    except _cvxpy().error.SolverError as exc:
        row["range"] = repr(exc)
    fit = rc.fit_best_of_n(s, k, n_draws=n_draws, seed=rep)
    low, high = fit.interval(np.array(bon.ATTEMPTS_N, dtype=float), LEVEL)
    row["rarecast"] = {"forecast": fit.attack_success_rate(np.array(bon.ATTEMPTS_N, float)).tolist()}
    row["rarecast"].update(low=low.tolist(), high=high.tolist())
    return [row]  # a list: forecast_accuracy.run_cells joins them


def _summary(rows: list[dict], truths: dict[str, list[float]]) -> dict:
    """Per family and N: the range's median ends and width, how often it holds the truth, where the truth and
    rarecast's interval fall inside it, and rarecast's coverage and width on the same repetitions."""
    table: dict = {}
    for name, truth in truths.items():
        reps = [r for r in rows if r["family"] == name]
        solved = [r for r in reps if isinstance(r["range"], dict)]
        for i, n in enumerate(bon.ATTEMPTS_N):
            t = truth[i]
            lo = np.array([r["range"]["low"][i] for r in solved])
            hi = np.array([r["range"]["high"][i] for r in solved])
            ours = [(r["rarecast"]["low"][i], r["rarecast"]["high"][i]) for r in solved]
            width = hi - lo
            table.setdefault(name, {})[str(n)] = {
                "truth": t,
                "solved": len(solved) / len(reps),
                "inaccurate": float(np.mean([not r["range"]["accurate"] for r in solved])),
                "median_low": float(np.median(lo)),
                "median_high": float(np.median(hi)),
                "median_width": float(np.median(width)),
                "range_holds_truth": float(np.mean((lo <= t) & (t <= hi))),
                "truth_position": float(np.median((t - lo) / width)),
                "rarecast_coverage": float(np.mean([a <= t <= b for a, b in ours])),
                "rarecast_median_width": float(np.median([b - a for a, b in ours])),
                "rarecast_width_share": float(np.median([(b - a) / w for (a, b), w in zip(ours, width)])),
                "rarecast_position": float(np.median([((a + b) / 2 - x) / w for (a, b), x, w in zip(ours, lo, width)])),
            }
    return table


def _markdown(doc: dict) -> str:
    a = doc["settings"]
    lines = [
        "# What the counts alone say about ASR@N",
        "",
        f"Generated by `{doc['command']}` on {doc['machine']} ({doc['date']}, {doc['seconds']:.0f} s): "
        f"{a['repetitions']} repetitions per family (seeds {a['first_rep']} to "
        f"{a['first_rep'] + a['repetitions'] - 1}), {a['m']} queries per repetition ({a['pool_m']} for the real "
        f"pool), {a['attempts']} attempts per query: the counts of benchmarks/best_of_n.py. The **range** is "
        "every ASR@N of a distribution of p (any shape, on a logit grid from p ~ 2e-9 to p ~ 1 - 5e-5) whose "
        f"log-likelihood is within "
        f"{DROP:.3f} of the largest (a {LEVEL:.0%} profile-likelihood confidence interval with no shape "
        "assumed). **Truth position** is where the exact ASR@N lies in it (0: its low end, 1: its high end), "
        "**rarecast's centre** where the middle of rarecast's 90% interval lies; both are medians over "
        "repetitions, as are the ends and widths.",
        "",
        "| family | N | exact ASR@N | range (median ends) | range width | range holds truth | truth position | "
        "rarecast's 90% coverage | rarecast's width | its share of the range | rarecast's centre |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, by_n in doc["table"].items():
        for n, e in by_n.items():
            lines.append(
                f"| {name} | {int(n):,} | {e['truth']:.3f} | {e['median_low']:.2f} to {e['median_high']:.2f} | "
                f"{e['median_width']:.2f} | {e['range_holds_truth']:.0%} | {e['truth_position']:.2f} | "
                f"{e['rarecast_coverage']:.0%} | {e['rarecast_median_width']:.2f} | {e['rarecast_width_share']:.0%} | "
                f"{e['rarecast_position']:.2f} |"
            )
    first = {f: e[str(bon.ATTEMPTS_N[0])] for f, e in doc["table"].items()}
    for key, what in (
        ("solved", "the solver failed (left out above)"),
        ("inaccurate", "Clarabel flagged a solve inaccurate (kept)"),
    ):
        shares = {f: 1 - e[key] if key == "solved" else e[key] for f, e in first.items()}
        if any(shares.values()):
            listed = ", ".join(f"{f} {r:.0%}" for f, r in shares.items() if r)
            lines += ["", f"Repetitions where {what}: {listed}."]
    return "\n".join(lines + [""])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=50, help="repetitions per family")
    parser.add_argument("--first-rep", type=int, default=0, help="seed of the first repetition")
    parser.add_argument("--m", type=int, default=500, help="queries per repetition (synthetic families)")
    parser.add_argument("--pool-m", type=int, default=400, help="queries per repetition (real pool)")
    parser.add_argument("--attempts", type=int, default=100, help="attempts per query")
    parser.add_argument("--draws", type=int, default=1000, help="rarecast posterior draws per interval")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the figures as one JSON object here")
    parser.add_argument("--markdown", type=Path, help="write the table as Markdown here")
    args = parser.parse_args(argv)
    _cvxpy()
    start = time.time()
    names = list(bon.FAMILIES) + ["real-pool"]
    jobs = [
        (f, r, args.pool_m if f == "real-pool" else args.m, args.attempts, args.draws)
        for f in names
        for r in range(args.first_rep, args.first_rep + args.reps)
    ]
    rows = fa.run_cells(_one, jobs, args.workers, unit="(family, repetition) pairs")
    truths = {f: [bon.family(f)[2](float(n)) for n in bon.ATTEMPTS_N] for f in names}
    doc = {
        "command": "python benchmarks/best_of_n_identification.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": fa.machine_name(),
        "date": date.today().isoformat(),
        "seconds": time.time() - start,
        "settings": {
            "repetitions": args.reps,
            "first_rep": args.first_rep,
            "m": args.m,
            "pool_m": args.pool_m,
            "attempts": args.attempts,
            "n_draws": args.draws,
            "level": LEVEL,
            "N": list(bon.ATTEMPTS_N),
        },
        "table": _summary(rows, truths),
        "rows": rows,
    }
    if args.out:
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
    text = _markdown(doc)
    if args.markdown:
        args.markdown.write_text(text)
    print(text)
    return doc


if __name__ == "__main__":
    main()
