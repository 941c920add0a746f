"""Backtest the default forecast against the paper's estimator on synthetic families and real scored pools.

Each split draws m evaluation queries, fits every estimator on them, and scores its forecasts at n = 100 m
and 1,000 m against what that deployment meets:

* worst-query risk: the realized maximum p of n deployment queries (synthetic families: drawn exactly from the
  family's distribution; real pools: n queries drawn from the rest of the pool, capped at what it holds);
* behavior frequency at tau, the p of the pool's top-1/n quantile: the pool's fraction above tau (about 1/n);
  the default's forecast (the mean over its draws) is also scored read as the median over the draws;
* aggregate risk: real pools, the realized 1 - prod(1 - p) of the deployment draw; synthetic families, its
  expectation 1 - (1 - E[p])^n.

A refused fit counts against its estimator: as an underestimate, outside one order of magnitude and not
covered. Errors (MAE) are compared on the splits where every estimator fitted. Synthetic families also get an
``oracle``: the true median of the deployment maximum, the floor that no estimator can beat on MAE.

The default's worst-query forecast is also read at quantiles 0.5 to 0.95 of its predictive distribution; the
goal section picks the one quantile q* (shared by every pool) whose underestimation rate is no higher than
gumbel-ols's on the same splits, and reports the default's MAE there as a ratio to gumbel-ols's.

    python benchmarks/forecast_accuracy.py --quick --out docs/forecast-accuracy.json \
        --markdown docs/forecast-accuracy.md
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
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

import rarecast as rc
from rarecast.errors import ForecastError, RarecastWarning
from rarecast.evaluation.synthetic import FAMILIES
from rarecast.forecasting.risks import RISKS as RISK_REGISTRY
from rarecast.forecasting.risks import max_quantile_psi
from rarecast.forecasting.tail import DEFAULT_COUNTS, DEFAULT_EXACT
from rarecast.scores import p_from_psi

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "experiments" / "data"
sys.path[:0] = [str(ROOT / "experiments"), str(ROOT / "experiments" / "rare")]
from pools import committed, read_pool  # noqa: E402

RISKS = list(RISK_REGISTRY)
#: The synthetic families with exact scores (the rest are sampled counts), in FAMILIES's order.
EXACT_FAMILIES = [name for name, family in FAMILIES.items() if family.trials is None]
MULTIPLES = [100, 1000]
QUANTILES = np.round(np.arange(0.5, 0.96, 0.05), 2)
FLOOR = 1e-300  # forecasts of exactly 0 (a bounded fitted tail) are scored as this
# The default's behavior frequency read as the median over its draws (its rule before 2026-12-02; the
# default is now their mean), scored beside it on the same splits.
MEDIAN_FREQUENCY = "default (median frequency)"


def real_pools() -> dict[str, np.ndarray]:
    """log p of every committed real pool: the uncommon-regime pools and the rare-regime pools (their chunks,
    and the action pool mixed with injected queries, as experiments/rare/pools.py reads them)."""
    pools = {}
    for name in ("misuse", "misaligned"):
        path = DATA / f"{name}_scores.parquet"
        if path.exists():
            pools[name] = pq.read_table(path, columns=["logp"])["logp"].to_numpy()
    for pool in ("misuse", "secret", "secret-injected", "action", "action-injected"):
        if committed(pool):
            pools[f"rare-{pool}"] = read_pool(pool)[0]
    return pools


def exact_cells(real: dict[str, np.ndarray]) -> list[tuple[str, int, np.ndarray | None]]:
    """(pool, m, log p of a real pool or None) for every exact synthetic family at m = 100 and 1,000 and every
    real pool in ``real`` at m = 100 and 300: the cells of the benchmarks that study the default on exact
    scores."""
    cells: list[tuple[str, int, np.ndarray | None]] = [(p, m, None) for p in EXACT_FAMILIES for m in (100, 1000)]
    return cells + [(p, m, logp) for p, logp in real.items() for m in (100, 300)]


def estimator_settings(text: str) -> dict:
    """An estimator's keyword arguments from ``"k=0.25,prior_sd=0.1"`` (values read as JSON; ``auto`` as
    itself); ``""`` gives none."""
    pairs = (kv.split("=") for kv in text.split(",") if kv)
    return {key: value if value == "auto" else json.loads(value) for key, value in pairs}


def deployment_max(family, n: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """p of the largest of n queries drawn from a synthetic family, exactly: its survival is 1 - U^(1/n)."""
    return p_from_psi(family.isf(-np.expm1(np.log(rng.uniform(size=len(n))) / n)))


def pool_split(size: int, m: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A real pool's split: evaluation indices, deployment indices in draw order (disjoint from them), and the
    deployment size at each multiple, capped by what the pool holds."""
    idx = rng.permutation(size)
    return idx[:m], idx[m:], np.minimum(np.array(MULTIPLES) * m, size - m).astype(float)


def split_truths(pool: str, m: int, rng: np.random.Generator, logp_pool: np.ndarray | None):
    """(evaluation scores, {risk: truths per multiple}, deployment sizes, tau per multiple) of one split."""
    if logp_pool is None:
        family = FAMILIES[pool]
        scores = family.sample(rng, m)
        n = np.array(MULTIPLES, dtype=float) * m
        tau = family.true_worst_query_risk(n)
        truth = {
            "worst_query_risk": deployment_max(family, n, rng),
            "behavior_frequency": 1.0 / n,
            "aggregate_risk": family.true_aggregate_risk(n),
        }
        return scores, truth, n, tau
    evaluation, deployed, n = pool_split(len(logp_pool), m, rng)
    scores = rc.Scores.from_logp(logp_pool[evaluation])
    deploy = logp_pool[deployed]
    log_tau = np.sort(logp_pool)[::-1][(len(logp_pool) / n).astype(int) - 1]
    tau = np.exp(log_tau)
    # ">=": at 1,000x the pool's top-1/n quantile can be its largest score, and nothing lies above that
    truth = {
        "worst_query_risk": np.array([np.exp(deploy[: int(k)].max()) for k in n]),
        "behavior_frequency": np.array([np.mean(logp_pool >= t) for t in log_tau]),
        "aggregate_risk": np.array([-np.expm1(np.sum(np.log1p(-np.exp(deploy[: int(k)])))) for k in n]),
    }
    return scores, truth, n, tau


def paper_scores(scores: rc.Scores) -> rc.Scores:
    """Counts read as the paper reads them, p = s / k, for estimators of exact scores; exact scores as they are."""
    return rc.Scores.from_p(scores.successes / scores.trials) if scores.kind == "counts" else scores


def fit_row(method: str, scores, n: np.ndarray, tau: np.ndarray, draws: int, seed: int) -> dict:
    """Point forecasts and 90% intervals of the three risks (and, for the default, quantile forecasts)."""
    name = (
        DEFAULT_EXACT
        if method == "default" and scores.kind == "exact"
        else (DEFAULT_COUNTS if method == "default" else method)
    )
    data = scores if name == DEFAULT_COUNTS else paper_scores(scores)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):  # refused fits are counted, not printed
            warnings.simplefilter("ignore", RarecastWarning)
            fit = rc.fit_tail(data, method=name, n_draws=draws, seed=seed)
            row = {}
            for risk in RISKS:
                x = tau if risk == "behavior_frequency" else n
                point = np.atleast_1d(fit.forecast(risk, x))
                low, high = (np.atleast_1d(v) for v in fit.interval(risk, x, level=0.9))
                row[risk] = [point.tolist(), low.tolist(), high.tolist()]
            if method == "default":
                row["frequency_median"] = np.atleast_1d(fit.behavior_frequency(tau, quantile=0.5)).tolist()
                qs = np.repeat(QUANTILES, len(n))
                psi = max_quantile_psi(fit.draws(), np.tile(n, len(QUANTILES)), qs)
                row["quantiles"] = p_from_psi(psi).reshape(len(QUANTILES), len(n)).tolist()
            return row
    except ForecastError:
        return {"refused": True}


def oracle_row(pool: str, n: np.ndarray) -> dict:
    """The true median and 5% / 95% points of the deployment maximum: what a perfect forecaster says."""
    family = FAMILIES[pool]
    point, low, high = (p_from_psi(family.isf(-np.expm1(np.log(q) / n))).tolist() for q in (0.5, 0.05, 0.95))
    return {"worst_query_risk": [point, low, high]}


def run_task(task) -> list[dict]:
    """Every split of one (pool, m); one row per split with each method's forecasts and the truths."""
    pool, m, splits, draws, methods, logp_pool = task
    rows = []
    for split in range(splits):
        rng = np.random.default_rng([zlib.crc32(pool.encode()), m, split])
        scores, truth, n, tau = split_truths(pool, m, rng, logp_pool)
        fits = {meth: fit_row(meth, scores, n, tau, draws, split) for meth in methods}
        if "frequency_median" in fits.get("default", {}):
            fits[MEDIAN_FREQUENCY] = {
                "behavior_frequency": [fits["default"]["frequency_median"], *fits["default"]["behavior_frequency"][1:]]
            }
        if logp_pool is None:
            fits["oracle"] = oracle_row(pool, n)
        rows.append(
            {
                "pool": pool,
                "m": m,
                "split": split,
                "n": n.tolist(),
                "truth": {k: v.tolist() for k, v in truth.items()},
                "fits": fits,
            }
        )
    return rows


def _err(forecast, truth) -> np.ndarray:
    return np.log10(np.maximum(forecast, FLOOR)) - np.log10(np.maximum(truth, FLOOR))


def cell_metrics(rows: list[dict], method: str, risk: str, j: int, common: np.ndarray) -> dict:
    """Metrics of one method, risk and multiple over splits; refusals count as failures."""
    got = [r["fits"].get(method, {}) for r in rows]
    ok = np.array([risk in g for g in got])
    truth = np.array([r["truth"][risk][j] for r in rows])
    point = np.array([g[risk][0][j] if risk in g else np.nan for g in got])
    low = np.array([g[risk][1][j] if risk in g else np.nan for g in got])
    high = np.array([g[risk][2][j] if risk in g else np.nan for g in got])
    err = _err(point, truth)
    covered = ok & (np.maximum(low, FLOOR) <= truth) & (truth <= high)
    # an interval whose lower end is 0 (draws of a bounded tail ending below tau) has no width in orders
    positive = ok & (np.nan_to_num(low) > 0)
    width = np.log10(high[positive]) - np.log10(low[positive])
    return {
        "splits": len(rows),
        "refused": float(np.mean(~ok)),
        "mae_log10": float(np.mean(np.abs(err[common & ok]))) if (common & ok).any() else None,
        "within_1oom": float(np.mean(ok & (np.abs(np.nan_to_num(err, nan=99)) <= 1))),
        "underestimation": float(np.mean(~ok | (np.nan_to_num(err, nan=-99) < 0))),
        "coverage": float(np.mean(covered)) if (~np.isnan(low[ok])).any() else None,
        "median_width_log10": float(np.median(width)) if width.size else None,
        "lower_end_zero": float(np.mean(low[ok] <= 0)) if ok.any() and not np.isnan(low[ok]).all() else None,
    }


def summarize(rows: list[dict], methods: list[str]) -> list[dict]:
    """One row per (pool, method, risk, multiple), metrics pooled over m (each m's splits weigh equally)."""
    table = []
    for pool in dict.fromkeys(r["pool"] for r in rows):
        for m in sorted({r["m"] for r in rows if r["pool"] == pool}):
            rs = [r for r in rows if r["pool"] == pool and r["m"] == m]
            present = [meth for meth in methods + [MEDIAN_FREQUENCY, "oracle"] if meth in rs[0]["fits"]]
            for risk in RISKS:
                for j, mult in enumerate(MULTIPLES):
                    fitted = [meth for meth in present if meth not in ("oracle", MEDIAN_FREQUENCY)]
                    common = np.array([all(risk in r["fits"][meth] for meth in fitted) for r in rs])
                    for meth in present:
                        if risk not in rs[0]["fits"][meth] and meth in ("oracle", MEDIAN_FREQUENCY):
                            continue
                        table.append(
                            {
                                "pool": pool,
                                "m": m,
                                "method": meth,
                                "risk": risk,
                                "multiple": mult,
                                "n": int(np.median([r["n"][j] for r in rs])),
                                **cell_metrics(rs, meth, risk, j, common),
                            }
                        )
    return table


def pooled(table: list[dict], risk: str, multiple: int) -> dict[tuple[str, str], dict]:
    """Metrics averaged over m for each (pool, method)."""
    acc: dict[tuple[str, str], list[dict]] = {}
    for r in table:
        if r["risk"] == risk and r["multiple"] == multiple:
            acc.setdefault((r["pool"], r["method"]), []).append(r)
    keys = [
        "mae_log10",
        "within_1oom",
        "underestimation",
        "coverage",
        "median_width_log10",
        "lower_end_zero",
        "refused",
    ]
    out = {}
    for k, rs in acc.items():
        out[k] = {
            key: (float(np.mean([r[key] for r in rs])) if all(r[key] is not None for r in rs) else None) for key in keys
        }
    return out


def matched_index(under: np.ndarray, target: float) -> int | None:
    """The goal's rule: the first (smallest) quantile whose underestimation rate is at most ``target``
    (gumbel-ols's), or None when none is; the tolerance absorbs equal rates averaged in different orders."""
    hits = np.flatnonzero(under <= target + 1e-12)
    return int(hits[0]) if hits.size else None


def matched_quantile(rows: list[dict]) -> dict:
    """q*: the smallest shared quantile whose pooled underestimation is at most gumbel-ols's; MAE ratios there.

    Underestimation is pooled over pools with equal weight (each pool's rate over its m and multiples);
    refusals count as underestimates for either estimator. MAE is over the splits where both fitted.
    """
    pools = list(dict.fromkeys(r["pool"] for r in rows))
    stats = {}
    for pool in pools:
        rs = [r for r in rows if r["pool"] == pool]
        truth = np.array([r["truth"]["worst_query_risk"] for r in rs])
        g = [r["fits"]["gumbel-ols"] for r in rs]
        d = [r["fits"]["default"] for r in rs]
        both = np.array([("quantiles" in b) and ("worst_query_risk" in a) for a, b in zip(g, d)])
        g_err = np.array(
            [
                _err(np.array(a["worst_query_risk"][0]), t)
                if "worst_query_risk" in a
                else np.full(truth.shape[1], -99.0)
                for a, t in zip(g, truth)
            ]
        )
        q_err = np.array(
            [
                _err(np.array(b["quantiles"]), t[None, :])
                if "quantiles" in b
                else np.full((len(QUANTILES), truth.shape[1]), -99.0)
                for b, t in zip(d, truth)
            ]
        )
        stats[pool] = {
            "gumbel_under": float(np.mean(g_err < 0)),
            "default_under": np.mean(q_err < 0, axis=(0, 2)),
            "gumbel_mae": float(np.mean(np.abs(g_err[both]))),
            "default_mae": np.mean(np.abs(q_err[both]), axis=(0, 2)),
        }
    target = float(np.mean([s["gumbel_under"] for s in stats.values()]))
    under = np.mean([s["default_under"] for s in stats.values()], axis=0)
    i = matched_index(under, target)
    out = {
        "gumbel_ols_underestimation": target,
        "default_underestimation_by_quantile": dict(zip(map(float, QUANTILES), map(float, under))),
    }
    if i is None:
        return {**out, "q_star": None}
    ratios = {p: float(s["default_mae"][i] / s["gumbel_mae"]) for p, s in stats.items()}
    return {
        **out,
        "q_star": float(QUANTILES[i]),
        "default_underestimation_at_q_star": float(under[i]),
        "mae_ratio_geomean": float(np.exp(np.mean(np.log(list(ratios.values()))))),
        "mae_ratio_by_pool": ratios,
        "worst_pool": max(ratios, key=ratios.get),
        "worst_pool_ratio": max(ratios.values()),
        "mae_ratio_at_median_by_pool": {p: float(s["default_mae"][0] / s["gumbel_mae"]) for p, s in stats.items()},
    }


def markdown(table: list[dict], meta: dict, goal: dict) -> str:
    lines = [
        "# Forecast accuracy: synthetic families and real pools\n",
        f"Generated by `{meta['command']}` on {meta['machine']} ({meta['date']}, {meta['seconds']:.0f} s): "
        f"{meta['splits']} splits per (pool, m), m in {meta['m']} (real pools: {meta['m_real']}), "
        f"{meta['draws']} draws per fit. Errors are log10(forecast / truth), averaged over m. Truth is the "
        "realized maximum of the deployment draw for worst-query risk (see the script's docstring for the "
        "other two). A refused fit counts as an underestimate, outside one order and not covered; MAE is "
        "over the splits where every estimator fitted. The median width is over the intervals whose lower end "
        "is above 0; `lower end 0` is the share whose lower end is 0 (a bounded tail in most draws). "
        "`default` is gpd-bayes (binomial on count "
        "families); `oracle` is the true median of the deployment maximum (the floor on MAE). Real pools' "
        "n is capped by the pool: the column n gives the median n used.\n",
    ]
    lines.append("\n## Matched underestimation (worst-query risk, 100x and 1,000x, all pools)\n")
    lines.append("```json\n" + json.dumps(goal, indent=1) + "\n```\n")
    for risk in RISKS:
        for mult in MULTIPLES:
            p = pooled(table, risk, mult)
            lines.append(f"\n## {risk}, n = {mult} m\n")
            lines.append(
                "| pool | method | MAE log10 | within 1 OOM | underestimates | 90% coverage | "
                "median width (orders) | lower end 0 | refused |"
            )
            lines.append("|---|---|---|---|---|---|---|---|---|")
            fmt = lambda v, f: "n/a" if v is None else format(v, f)  # noqa: E731
            for (pool, meth), v in p.items():
                lines.append(
                    f"| {pool} | {meth} | {fmt(v['mae_log10'], '.2f')} | {fmt(v['within_1oom'], '.0%')} | "
                    f"{fmt(v['underestimation'], '.0%')} | {fmt(v['coverage'], '.0%')} | "
                    f"{fmt(v['median_width_log10'], '.1f')} | {fmt(v['lower_end_zero'], '.0%')} | "
                    f"{fmt(v['refused'], '.0%')} |"
                )
    return "\n".join(lines) + "\n"


def run_cells(
    task_fn: Callable[[Any], list[dict]], tasks: list, jobs: int, unit: str = "(pool, m) cells"
) -> list[dict]:
    """Every task's rows, in task order, from ``jobs`` processes; progress (count, elapsed, ETA) on stderr."""
    t0, rows = time.time(), []
    with ProcessPoolExecutor(max_workers=jobs) as ex:
        for i, cell in enumerate(ex.map(task_fn, tasks), 1):
            rows += cell
            elapsed = time.time() - t0
            eta = elapsed / i * (len(tasks) - i)
            print(f"\r{i}/{len(tasks)} {unit}, {elapsed:.0f} s, ETA {eta:.0f} s", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return rows


def machine_name() -> str:
    """CPU model and core count, for the record of where numbers came from."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            model = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer splits and draws (a few minutes)")
    ap.add_argument("--splits", type=int, default=None)
    ap.add_argument("--draws", type=int, default=None)
    ap.add_argument("--m", type=int, action="append", default=None, help="synthetic evaluation sizes")
    ap.add_argument("--m-real", type=int, action="append", default=None, help="real-pool evaluation sizes")
    ap.add_argument("--pools", nargs="*", default=None, help="synthetic family or real pool names")
    ap.add_argument("--methods", nargs="*", default=["default", "gumbel-ols", "lognormal"])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", help="write every split's forecasts and the summary as one JSON object")
    ap.add_argument("--markdown", help="write the tables as Markdown (for docs/)")
    args = ap.parse_args(argv)
    if "default" not in args.methods or "gumbel-ols" not in args.methods:
        ap.error("--methods must include default and gumbel-ols (the goal compares them)")
    splits = args.splits or (40 if args.quick else 200)
    draws = args.draws or (200 if args.quick else 400)
    ms, ms_real = args.m or [100, 1000], args.m_real or [100, 300]
    real = real_pools()
    names = args.pools or list(FAMILIES) + list(real)
    tasks = [
        (p, m, splits, draws, args.methods, real.get(p))
        for p in names
        for m in (ms_real if p in real else ms)
        if p not in real or len(real[p]) >= 10 * m + m
    ]
    t0 = time.time()
    rows = run_cells(run_task, tasks, args.jobs)
    table = summarize(rows, args.methods)
    goal = matched_quantile(rows)
    meta = {
        "command": "python benchmarks/forecast_accuracy.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_name(),
        "date": time.strftime("%Y-%m-%d"),
        "splits": splits,
        "draws": draws,
        "m": ms,
        "m_real": ms_real,
        "real_pools": {p: len(v) for p, v in real.items()},
        "seconds": time.time() - t0,
        "rarecast": rc.__version__,
    }
    print(json.dumps(goal, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps({"meta": meta, "goal": goal, "table": table, "splits": rows}) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(markdown(table, meta, goal))
    return 0


if __name__ == "__main__":
    sys.exit(main())
