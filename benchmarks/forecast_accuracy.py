"""Backtest every tail estimator on synthetic families whose true deployment risks are known exactly.

For each family, evaluation size m and split, m scores are drawn, each estimator is fitted, and its forecasts
at n = 10m, 100m and 1000m are scored against the truth:

* worst-query risk against p at the exact top-1/n quantile;
* behavior frequency at tau = that true worst-query risk, whose true frequency is exactly 1/n;
* aggregate risk against 1 - (1 - E[p])^n.

Reported per estimator and risk: mean absolute log10 error, fraction within one order of magnitude,
underestimation rate, coverage of the 90% interval, and the fraction of splits where the fit refused.

    python benchmarks/forecast_accuracy.py --quick --out results.json --markdown docs/forecast-accuracy.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
import zlib
from concurrent.futures import ProcessPoolExecutor

import numpy as np

import rarecast as rc
from rarecast.errors import ForecastError, RarecastWarning
from rarecast.synthetic import FAMILIES
from rarecast.tail import DEFAULT_COUNTS, DEFAULT_EXACT

EXACT_METHODS = ["gumbel-ols", "gumbel-ols-digamma", "lognormal", "lognormal-quantile", "exponential",
                 "exponential-predictive", "gpd", "gpd-bayes"]
COUNT_METHODS = ["gumbel-ols", "binomial"]
RISKS = ["worst_query_risk", "behavior_frequency", "aggregate_risk"]
MULTIPLES = [10, 100, 1000]
FLOOR = 1e-20  # forecasts below this (e.g. a bounded fitted tail) are scored as this value


def as_exact(scores: rc.Scores) -> rc.Scores:
    """The paper's treatment of sampled estimates: p = s / k, zeros included."""
    return rc.Scores.from_p(scores.successes / scores.trials)


def truths(family, m: int) -> dict[str, np.ndarray]:
    n = np.array(MULTIPLES, dtype=float) * m
    worst = family.true_worst_query_risk(n)
    return {"n": n, "worst_query_risk": worst, "behavior_frequency": 1.0 / n,
            "tau": worst, "aggregate_risk": family.true_aggregate_risk(n)}


def run_cell(task) -> list[dict]:
    """All splits of one (family, m): returns per-split errors and coverage per method, risk and n."""
    name, m, splits, draws, methods = task
    family = FAMILIES[name]
    truth = truths(family, m)
    out = []
    for split in range(splits):
        rng = np.random.default_rng([zlib.crc32(name.encode()), m, split])
        scores = family.sample(rng, m)
        for method in methods:
            data = as_exact(scores) if (family.trials and not method.startswith("binomial")) else scores
            out.append(score_method(method, data, truth, draws, split))
    return [dict(r, family=name, m=m) for r in out]


def parse_method(spec: str) -> tuple[str, dict]:
    """``name`` or ``name:key=value,key=value`` (values parsed as numbers where they can be)."""
    name, _, rest = spec.partition(":")
    params = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        try:
            params[key] = int(value)
        except ValueError:
            try:
                params[key] = float(value)
            except ValueError:
                params[key] = value
    return name, params


def score_method(method: str, data, truth, draws: int, split: int) -> dict:
    row = {"method": method, "split": split, "failed": False}
    name, params = parse_method(method)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RarecastWarning)
            fit = rc.fit_tail(data, method=name, n_draws=draws, seed=split, **params)
            for risk in RISKS:
                x = truth["tau"] if risk == "behavior_frequency" else truth["n"]
                point = np.maximum(np.atleast_1d(fit.forecast(risk, x)), FLOOR)
                low, high = (np.atleast_1d(v) for v in fit.interval(risk, x, level=0.9))
                row[risk] = {"err": (np.log10(point) - np.log10(truth[risk])).tolist(),
                             "covered": ((low <= truth[risk]) & (truth[risk] <= high)).tolist()}
    except ForecastError:
        row["failed"] = True
    return row


def summarize(rows: list[dict]) -> list[dict]:
    """One row per (family, method, risk, m, n multiple) with the four metrics and the failure rate."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["family"], r["method"], r["m"]), []).append(r)
    table = []
    for (family, method, m), rs in sorted(groups.items()):
        ok = [r for r in rs if not r["failed"]]
        for risk in RISKS:
            for i, mult in enumerate(MULTIPLES):
                err = np.array([r[risk]["err"][i] for r in ok])
                cov = np.array([r[risk]["covered"][i] for r in ok])
                table.append({
                    "family": family, "method": method, "risk": risk, "m": m, "n": mult * m, "multiple": mult,
                    "splits": len(rs), "failed": 1 - len(ok) / len(rs),
                    "mae_log10": float(np.mean(np.abs(err))) if len(err) else None,
                    "within_1oom": float(np.mean(np.abs(err) <= 1)) if len(err) else None,
                    "underestimation": float(np.mean(err < 0)) if len(err) else None,
                    "coverage": float(np.mean(cov)) if len(cov) else None,
                })
    return table


def pooled(table: list[dict], risk: str, multiple: int) -> dict[tuple[str, str], dict]:
    """Metrics pooled over m (equal weight per m) for each (family, method)."""
    acc: dict[tuple[str, str], list[dict]] = {}
    for r in table:
        if r["risk"] == risk and r["multiple"] == multiple and r["mae_log10"] is not None:
            acc.setdefault((r["family"], r["method"]), []).append(r)
    keys = ["mae_log10", "within_1oom", "underestimation", "coverage", "failed"]
    return {k: {key: float(np.mean([r[key] for r in rs])) for key in keys} for k, rs in acc.items()}


def goals(table: list[dict], exact_default: str, counts_default: str, risk: str) -> dict:
    """The issue's goals for the defaults against gumbel-ols at 100x extrapolation, on the same splits.

    Exact families are scored with ``exact_default``, sampled ones with ``counts_default``. Families where
    both estimators are within 0.05 orders of the truth on average (a saturated aggregate risk) carry no
    information about the ratio and are left out of it.
    """
    p = pooled(table, risk, 100)
    fams = sorted({f for f, _ in p})
    default_of = {f: counts_default if FAMILIES[f].trials else exact_default for f in fams}
    fams = [f for f in fams if (f, default_of[f]) in p and (f, "gumbel-ols") in p]
    ours = {f: p[(f, default_of[f])] for f in fams}
    paper = {f: p[(f, "gumbel-ols")] for f in fams}
    informative = [f for f in fams if max(ours[f]["mae_log10"], paper[f]["mae_log10"]) >= 0.05]
    ratios = {f: ours[f]["mae_log10"] / paper[f]["mae_log10"] for f in informative}
    return {
        "risk": risk,
        "defaults": {"exact": exact_default, "counts": counts_default},
        "mae_ratio_geomean": float(np.exp(np.mean(np.log(list(ratios.values()))))) if ratios else None,
        "mae_ratio_by_family": ratios,
        "worst_family_ratio": max(ratios.values()) if ratios else None,
        "within_1oom_not_worse": {f: ours[f]["within_1oom"] >= paper[f]["within_1oom"] for f in fams},
        "underestimation": float(np.mean([ours[f]["underestimation"] for f in fams])),
        "coverage_by_family": {f: ours[f]["coverage"] for f in fams},
    }


def markdown(table: list[dict], meta: dict, goal_rows: list[dict]) -> str:
    lines = ["# Forecast accuracy on synthetic families\n",
             f"Generated by `benchmarks/forecast_accuracy.py` on {meta['machine']} ({meta['date']}), "
             f"{meta['splits']} splits per (family, m), m in {meta['m']}, {meta['draws']} interval draws, "
             f"{meta['seconds']:.0f} s. Errors are log10(forecast / truth), pooled over m.\n"]
    for risk in RISKS:
        for mult in MULTIPLES:
            p = pooled(table, risk, mult)
            lines.append(f"\n## {risk}, n = {mult} m\n")
            lines.append("| family | method | MAE log10 | within 1 OOM | underestimates | 90% coverage | refused |")
            lines.append("|---|---|---|---|---|---|---|")
            for (fam, meth), v in sorted(p.items()):
                lines.append(f"| {fam} | {meth} | {v['mae_log10']:.2f} | {v['within_1oom']:.0%} | "
                             f"{v['underestimation']:.0%} | {v['coverage']:.0%} | {v['failed']:.0%} |")
    lines.append("\n## Goals for the default at 100x (against gumbel-ols on the same splits)\n")
    lines.append("```json\n" + json.dumps(goal_rows, indent=1) + "\n```\n")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer splits and draws (about 2 minutes)")
    ap.add_argument("--splits", type=int, default=None)
    ap.add_argument("--draws", type=int, default=None)
    ap.add_argument("--m", type=int, action="append", default=None)
    ap.add_argument("--families", nargs="*", default=list(FAMILIES))
    ap.add_argument("--methods", nargs="*", default=None)
    ap.add_argument("--default", default=DEFAULT_EXACT, help="the exact-score estimator whose goals are checked")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", help="write all figures as one JSON object")
    ap.add_argument("--markdown", help="write the tables as Markdown (for docs/)")
    args = ap.parse_args(argv)
    splits = args.splits or (30 if args.quick else 200)
    draws = args.draws or (100 if args.quick else 300)
    ms = args.m or [100, 300, 1000]
    tasks = []
    for name in args.families:
        fam = FAMILIES[name]
        methods = args.methods or (COUNT_METHODS if fam.trials else EXACT_METHODS)
        methods = [m for m in methods if not (fam.trials is None and m == "binomial")]
        tasks += [(name, m, splits, draws, methods) for m in ms]
    t0 = time.time()
    rows = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for i, cell in enumerate(pool.map(run_cell, tasks), 1):
            rows += cell
            print(f"\r{i}/{len(tasks)} cells, {time.time() - t0:.0f} s", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    table = summarize(rows)
    meta = {"machine": machine_name(),
            "date": time.strftime("%Y-%m-%d"), "splits": splits, "draws": draws, "m": ms,
            "seconds": time.time() - t0, "rarecast": rc.__version__}
    goal_rows = [goals(table, args.default, DEFAULT_COUNTS, risk) for risk in RISKS]
    print_table(table)
    print(json.dumps(goal_rows, indent=1))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"meta": meta, "table": table, "goals": goal_rows}, fh, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(markdown(table, meta, goal_rows))
    return 0


def machine_name() -> str:
    """CPU model and core count, for the record of where numbers came from."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            model = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores"


def print_table(table: list[dict]) -> None:
    p = pooled(table, "worst_query_risk", 100)
    print(f"{'family':18s} {'method':24s} {'MAE':>6s} {'<=1OOM':>7s} {'under':>6s} {'cover':>6s} {'fail':>5s}")
    for (fam, meth), v in sorted(p.items()):
        print(f"{fam:18s} {meth:24s} {v['mae_log10']:6.2f} {v['within_1oom']:7.0%} {v['underestimation']:6.0%} "
              f"{v['coverage']:6.0%} {v['failed']:5.0%}")


if __name__ == "__main__":
    sys.exit(main())
