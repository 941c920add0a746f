"""Best-of-N accuracy: rarecast's ASR@N forecasts beside SABER's, on families with exact truths.

Each repetition draws m queries' probabilities p from a family, gives every query ``--attempts`` (100)
Bernoulli(p) attempts, and forecasts ASR@N = E[1 - (1 - p)^N] at N = 1,000 and 10,000 from the counts with

* rarecast: :func:`rarecast.fit_best_of_n` (point forecast and its 90% posterior interval);
* SABER-anchored: ``saber.SABER().fit(s, k).predict(N)``, 1 - (1 - ASR@k)(k/N)^alpha, with its Wald interval
  from ``confidence_interval_anchored`` (alpha's standard error from SABER's own Fisher information);
* SABER-plugin: the same Beta fit's ``predict(N, method="plugin")`` (no interval).

Every estimator sees the same counts in each repetition. Truths are exact: for the synthetic families the
population ASR@N by numerical integration over the family's distribution of p; for the real pool
(experiments/data/sampled_scores.parquet: 400 queries whose exact log p the model gave by teacher forcing),
each repetition draws m queries from the pool with replacement and samples their attempts from the exact p,
and the truth is the pool's mean of 1 - (1 - p)^N over its 400 exact p. A refused fit (an exception) counts as
a failure: no error is averaged for it and its interval does not cover.

SABER is a benchmark-only extra: ``pip install 'rarecast[bench]'`` (or ``pip install saber-risk==0.2.0``).

    python benchmarks/best_of_n.py --reps 50 --out docs/best-of-n.json --markdown docs/best-of-n.md
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
from scipy import integrate, stats
from scipy.special import betaln, expit, log_expit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import forecast_accuracy as fa  # noqa: E402

from rarecast.forecasting.best_of_n import BEND_SD  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
POOL = ROOT / "experiments" / "data" / "sampled_scores.parquet"
ATTEMPTS_N = (1_000, 10_000)
LEVEL = 0.9
METHODS = ("rarecast", "saber-anchored", "saber-plugin")


def _saber():
    try:
        import saber
    except ImportError:
        sys.exit("this benchmark compares with SABER: pip install 'rarecast[bench]' (saber-risk==0.2.0)")
    return saber


# --- families: a sampler of p and the exact ASR@N -------------------------------------------------------


def _logit_normal_asr(mu: float, sigma: float, N: float) -> float:
    """E[1 - (1 - p)^N] for logit p ~ Normal(mu, sigma), by quadrature in the standard normal z."""
    f = lambda z: stats.norm.pdf(z) * -np.expm1(N * log_expit(-(mu + sigma * z)))  # noqa: E731
    return integrate.quad(f, -12, 12, limit=400, points=[(-np.log(N) - mu) / sigma])[0]


def _beta_asr(a: float, b: float, N: float) -> float:
    """E[1 - (1 - p)^N] for p ~ Beta(a, b): 1 - B(a, b + N) / B(a, b)."""
    return float(-np.expm1(betaln(a, b + N) - betaln(a, b)))


def _loguniform_asr(lo: float, hi: float, N: float) -> float:
    """E[1 - (1 - p)^N] for log p uniform on [log lo, log hi]."""
    f = lambda u: -np.expm1(N * np.log1p(-np.exp(u)))  # noqa: E731
    return integrate.quad(f, np.log(lo), np.log(hi), limit=400, points=[-np.log(N)])[0] / np.log(hi / lo)


def _two_logit_normals(w: float, a: tuple[float, float], b: tuple[float, float]):
    def draw(rng, m):
        low = rng.random(m) < w
        return np.where(low, expit(rng.normal(*b, m)), expit(rng.normal(*a, m)))

    return draw, lambda N: (1 - w) * _logit_normal_asr(*a, N) + w * _logit_normal_asr(*b, N)


def _immune(rng, m):
    p = rng.beta(0.4, 20, m)
    p[rng.random(m) < 0.4] = 0.0
    return p


FAMILIES = {
    # name: (description, draw(rng, m) -> p, truth(N) -> ASR@N)
    "beta": (
        "p ~ Beta(0.3, 30) (SABER's own family)",
        lambda rng, m: rng.beta(0.3, 30, m),
        lambda N: _beta_asr(0.3, 30, N),
    ),
    "logit-normal": (
        "logit p ~ Normal(-6, 2)",
        lambda rng, m: expit(rng.normal(-6, 2, m)),
        lambda N: _logit_normal_asr(-6, 2, N),
    ),
    "immune": ("40% of queries with p = 0, the rest Beta(0.4, 20)", _immune, lambda N: 0.6 * _beta_asr(0.4, 20, N)),
    "two-modes": (
        "half logit p ~ N(-2.5, 0.5), half N(-6.5, 0.7) (low mode p ~ 1.5e-3)",
        *_two_logit_normals(0.5, (-2.5, 0.5), (-6.5, 0.7)),
    ),
    "hidden-mode": (
        "half logit p ~ N(-2.5, 0.5), half N(-8, 0.7) (low mode p ~ 3e-4, ~3% seen at k = 100)",
        *_two_logit_normals(0.5, (-2.5, 0.5), (-8.0, 0.7)),
    ),
    "log-uniform": (
        "log p uniform on [log 1e-5, log 0.1] (bounded)",
        lambda rng, m: np.exp(rng.uniform(np.log(1e-5), np.log(0.1), m)),
        lambda N: _loguniform_asr(1e-5, 0.1, N),
    ),
}


def _pool_family():
    import pyarrow.parquet as pq

    p = np.exp(pq.read_table(POOL, columns=["logp"]).column("logp").to_numpy())
    truth = lambda N: float(np.mean(-np.expm1(N * np.log1p(-p))))  # noqa: E731
    return (
        f"real pool: {len(p)} queries' exact p (experiments/data/sampled_scores.parquet), resampled",
        lambda rng, m: rng.choice(p, m),
        truth,
    )


def family(name: str) -> tuple:
    """(description, draw(rng, m) -> p, truth(N) -> ASR@N) of a family in FAMILIES or of "real-pool"."""
    return _pool_family() if name == "real-pool" else FAMILIES[name]


def counts(name: str, rep: int, m: int, k: int) -> np.ndarray:
    """Successes of k attempts for each of m queries of family ``name`` in repetition ``rep``: the counts every
    method (and benchmarks/best_of_n_identification.py) sees in that repetition."""
    rng = np.random.default_rng([rep, sum(map(ord, name))])
    s: np.ndarray = rng.binomial(k, family(name)[1](rng, m))
    return s


# --- one repetition -------------------------------------------------------------------------------------


def _one(job: tuple) -> list[dict]:
    """Forecasts and intervals of every method on one repetition's counts."""
    name, rep, m, k, n_draws, bend_sd = job
    import rarecast as rc

    saber = _saber()
    s = counts(name, rep, m, k)
    N = np.array(ATTEMPTS_N, dtype=float)
    out = {}
    try:
        fit = rc.fit_best_of_n(s, k, n_draws=n_draws, seed=rep, bend_sd=bend_sd)
        low, high = fit.interval(N, LEVEL)
        out["rarecast"] = (fit.attack_success_rate(N).tolist(), low.tolist(), high.tolist(), fit.edf)
    except (ValueError, FloatingPointError) as exc:
        out["rarecast"] = repr(exc)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = saber.SABER().fit(s, k)
            # SABER's own standard error of alpha (its predict(confidence=) path): a Monte Carlo estimate on
            # NumPy's global random state, seeded here so that a rerun reproduces its intervals exactly
            np.random.seed(rep)
            se = model._estimate_alpha_se()
            anchored = [model.predict(int(n)).asr for n in N]
            plugin = [model.predict(int(n), method="plugin").asr for n in N]
            ci = [
                saber.confidence_interval_anchored(int(n), k, model.fit_result.asr_at_n, model.alpha, se, LEVEL)
                for n in N
            ]
        out["saber-anchored"] = (anchored, [c[0] for c in ci], [c[1] for c in ci], 2.0)
        out["saber-plugin"] = (plugin, None, None, 2.0)
    except (ValueError, FloatingPointError, RuntimeError) as exc:
        out["saber-anchored"] = out["saber-plugin"] = repr(exc)
    return [{"family": name, "rep": rep, "results": out}]  # a list: forecast_accuracy.run_cells joins them


# --- tables ---------------------------------------------------------------------------------------------


def _score(rows: list[dict], truths: dict[str, list[float]]) -> dict:
    """Per family and method: MAE at each N and averaged, coverage, median width, refusals."""
    table: dict = {}
    for name in truths:
        reps = [r for r in rows if r["family"] == name]
        truth = np.array(truths[name])
        for method in METHODS:
            res = [r["results"][method] for r in reps]
            ok = [x for x in res if not isinstance(x, str)]
            err = np.array([np.abs(np.array(x[0]) - truth) for x in ok]).reshape(-1, len(truth))
            entry = {
                "mae": err.mean(axis=0).tolist(),
                "mae_mean": float(err.mean()),
                "bias": (np.array([x[0] for x in ok]).reshape(-1, len(truth)) - truth).mean(axis=0).tolist(),
                "refused": 1 - len(ok) / len(res),
                "repetitions": len(res),
            }
            if ok and ok[0][1] is not None:
                covered = np.array([[lo <= t <= hi for lo, hi, t in zip(x[1], x[2], truth)] for x in ok])
                width = np.array([np.subtract(x[2], x[1]) for x in ok])
                entry["coverage"] = (covered.sum(axis=0) / len(res)).tolist()  # a refusal does not cover
                entry["median_width"] = np.median(width, axis=0).tolist()
            if method == "rarecast":
                entry["mean_edf"] = float(np.mean([x[3] for x in ok])) if ok else None
            table.setdefault(name, {})[method] = entry
    return table


def _goals(table: dict) -> dict:
    ours = np.array([table[f]["rarecast"]["mae_mean"] for f in table])
    theirs = np.array([table[f]["saber-anchored"]["mae_mean"] for f in table])
    ratio = {f: float(a / b) for f, a, b in zip(table, ours, theirs)}
    coverage = {f: table[f]["rarecast"].get("coverage") for f in table}
    cov_ok = {f: c is not None and all(0.85 <= x <= 0.95 for x in c) for f, c in coverage.items()}
    pooled = float(ours.mean() / theirs.mean())
    return {
        "pooled_mae_ratio": pooled,
        "pooled_goal_met": pooled <= 0.8,
        "mae_ratio_by_family": ratio,
        "worst_family": max(ratio, key=ratio.get),
        "no_family_10pct_worse": all(r <= 1.1 for r in ratio.values()),
        "coverage_85_95_by_family": cov_ok,
        "coverage_goal_met": all(cov_ok.values()),
    }


def _markdown(doc: dict) -> str:
    a = doc["settings"]
    g = doc["goals"]
    lines = [
        "# Best-of-N accuracy: rarecast beside SABER",
        "",
        f"Generated by `{doc['command']}` on {doc['machine']} ({doc['date']}, {doc['seconds']:.0f} s): "
        f"{a['repetitions']} repetitions per family (seeds {a['first_rep']} to "
        f"{a['first_rep'] + a['repetitions'] - 1}), {a['m']} queries per repetition ({a['pool_m']} for the "
        f"real pool), {a['attempts']} attempts per query, forecasts of ASR@N at N = "
        f"{', '.join(f'{n:,}' for n in ATTEMPTS_N)}; rarecast's intervals from {a['n_draws']} posterior draws "
        f"(bend below the knots: prior sd {a['bend_sd']}). "
        "All methods see the same counts in each repetition. Truths are exact (numerical integration over "
        "the family; for the real pool, the mean of 1 - (1 - p)^N over its 400 exact p, from which each "
        "repetition resamples its queries and samples their attempts). A refused fit counts as a failure "
        "(not covered). MAE is the mean absolute error in ASR (0 to 1), averaged over the two N.",
        "",
        "## Families",
        "",
        *[
            f"- **{f}**: {d}; exact ASR@N = {', '.join(f'{t:.3f}' for t in doc['truths'][f])}"
            for f, d in doc["families"].items()
        ],
        "",
        "## Goals (issue 16)",
        "",
        f"- pooled MAE, rarecast / SABER-anchored: {g['pooled_mae_ratio']:.2f} (goal <= 0.8: "
        f"{'met' if g['pooled_goal_met'] else 'missed'})",
        f"- no family more than 10% worse than SABER-anchored: {'met' if g['no_family_10pct_worse'] else 'missed'}"
        f" (worst: {g['worst_family']}, {g['mae_ratio_by_family'][g['worst_family']]:.2f}x)",
        f"- 90% coverage within 85-95% on every family: {'met' if g['coverage_goal_met'] else 'missed'} (met on "
        f"{sum(g['coverage_85_95_by_family'].values())} of {len(g['coverage_85_95_by_family'])})",
        "",
        "## Side by side",
        "",
        "| family | method | MAE | MAE N=1e3 | MAE N=1e4 | bias N=1e4 | 90% coverage (1e3 / 1e4) | "
        "median width (1e3 / 1e4) | refused | MAE ratio to SABER-anchored |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f, methods in doc["table"].items():
        base = methods["saber-anchored"]["mae_mean"]
        for method, e in methods.items():
            cov = " / ".join(f"{c:.0%}" for c in e["coverage"]) if "coverage" in e else "n/a"
            wid = " / ".join(f"{w:.2f}" for w in e["median_width"]) if "median_width" in e else "n/a"
            shape = f" (edf {e['mean_edf']:.1f})" if e.get("mean_edf") is not None else ""
            lines.append(
                f"| {f} | {method}{shape} | {e['mae_mean']:.3f} | {e['mae'][0]:.3f} | {e['mae'][1]:.3f} | "
                f"{e['bias'][1]:+.3f} | {cov} | {wid} | {e['refused']:.0%} | {e['mae_mean'] / base:.2f} |"
            )
    lines += [
        "",
        "`(edf x)`: rarecast's effective degrees of freedom, averaged over repetitions (2: a plain Beta, "
        "as SABER fits; more where the posterior loosens the smooth correction).",
        "",
    ]
    return "\n".join(lines)


def add_count_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the counts every best-of-N benchmark draws (and of its workers and outputs)."""
    parser.add_argument("--reps", type=int, default=50, help="repetitions per family")
    parser.add_argument(
        "--first-rep", type=int, default=0, help="seed of the first repetition (a later block is a held-out check)"
    )
    parser.add_argument("--m", type=int, default=500, help="queries per repetition (synthetic families)")
    parser.add_argument("--pool-m", type=int, default=400, help="queries per repetition (real pool)")
    parser.add_argument("--attempts", type=int, default=100, help="attempts per query")
    parser.add_argument("--draws", type=int, default=1000, help="rarecast posterior draws per interval")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the figures as one JSON object here")
    parser.add_argument("--markdown", type=Path, help="write the tables as Markdown here")


def run_repetitions(one, args: argparse.Namespace, *settings) -> tuple[list[dict], dict[str, list[float]]]:
    """``one((family, rep, m, attempts, draws, *settings))`` on every family and repetition, with progress, and
    the exact ASR@N of every family; the rows and the truths."""
    names = list(FAMILIES) + ["real-pool"]
    jobs = [
        (f, r, args.pool_m if f == "real-pool" else args.m, args.attempts, args.draws, *settings)
        for f in names
        for r in range(args.first_rep, args.first_rep + args.reps)
    ]
    rows = fa.run_cells(one, jobs, args.workers, unit="(family, repetition) pairs")
    return rows, {f: [family(f)[2](float(n)) for n in ATTEMPTS_N] for f in names}


def record(script: str, argv: list[str] | None, args: argparse.Namespace, start: float, **settings) -> dict:
    """Where a benchmark's figures came from: its command, machine, date, run time and settings."""
    return {
        "command": " ".join([f"python benchmarks/{script}", *(sys.argv[1:] if argv is None else argv)]),
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
            **settings,
            "N": list(ATTEMPTS_N),
            "level": LEVEL,
        },
    }


def write(doc: dict, text: str, args: argparse.Namespace) -> None:
    """Print the Markdown and write it and the JSON where the options say."""
    print(text)
    if args.out:
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text(text)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_count_arguments(parser)
    parser.add_argument(
        "--bend-sd", type=float, default=BEND_SD, help="rarecast's prior sd of the bend below the knots (0: none)"
    )
    parser.add_argument("--quick", action="store_true", help="5 repetitions (about a minute)")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps = 5
    _saber()
    start = time.time()
    rows, truths = run_repetitions(_one, args, args.bend_sd)
    table = _score(rows, truths)
    doc = {
        **record("best_of_n.py", argv, args, start, bend_sd=args.bend_sd),
        "families": {**{f: d[0] for f, d in FAMILIES.items()}, "real-pool": _pool_family()[0]},
        "truths": truths,
        "table": table,
        "goals": _goals(table),
    }
    write(doc, _markdown(doc), args)
    return doc


if __name__ == "__main__":
    main()
