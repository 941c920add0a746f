"""Pooling the tail's shape across related behaviors (rc.fit_tails) against gpd-bayes alone and gumbel-ols.

Each group is a set of behaviors forecast together, every one from its own m evaluation queries; each split
draws all of them afresh. Per behavior and split: gumbel-ols; the default gpd-bayes (prior N(0, 0.2^2) on
the shape); ``pooled``, gpd-bayes with the prior that rc.pooled_shape_prior learns from the *other* behaviors'
evaluation scores of the same split; and ``shape oracle``, gpd-bayes told the shape (synthetic families:
their exact shape, N(xi, 0.01^2); real pools: the shape's likelihood from the whole pool, as a normal), the
ceiling of what any shape information can give. Worst-query risk at 100x and 1,000x, truth the realized
deployment maximum, splits and truths as in benchmarks/forecast_accuracy.py (a behavior's first occurrence
in a group gets that benchmark's own splits). Forecasts are read at the predictive median and at q = 0.6, the
shared quantile that matches gumbel-ols's underestimation in docs/forecast-accuracy.md. A refused fit counts
as an underestimate and not covered; MAE is over the splits where every method fitted.

Groups: the three clean Qwen2.5-Coder-0.5B rare pools; the same with the secret and action pools mixed with
injected queries (a rare mode the others lack); the two SmolLM2 pools; three synthetic families of different
shapes (0, +0.25, -0.2: nothing to share); and three independent samples of one family (one shape shared).

    python benchmarks/shape_pooling.py --splits 50 --out docs/shape-pooling.json --markdown docs/shape-pooling.md
    python benchmarks/shape_pooling.py --splits 50 --first-split 50 --out docs/shape-pooling-heldout.json \
        --markdown docs/shape-pooling-heldout.md
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
import prior_width as pw  # noqa: E402

import rarecast as rc  # noqa: E402
from rarecast.forecasting.shape_pooling import SHAPE_GRID, ShapePrior, shape_log_likelihood  # noqa: E402

GROUPS = {
    "qwen": ["rare-misuse", "rare-secret", "rare-action"],
    "qwen-injected": ["rare-misuse", "rare-secret-injected", "rare-action-injected"],
    "smollm2": ["misuse", "misaligned"],
    "mixed shapes": ["exponential", "frechet", "bounded"],
    "exponential x3": ["exponential"] * 3,
    "frechet x3": ["frechet"] * 3,
    "bounded x3": ["bounded"] * 3,
}
EXACT_SHAPE = {"exponential": 0.0, "frechet": 0.25, "bounded": -0.2}
METHODS = ["gumbel-ols", "default", "pooled", "shape oracle"]
READ = {"median": 0, "q=0.6": int(np.flatnonzero(np.isclose(fa.QUANTILES, 0.6))[0])}


def shape_oracle(pool: str, logp_pool: np.ndarray | None) -> ShapePrior:
    """The shape a forecaster could at best be told: exact for a family, the whole pool's for a real pool."""
    if logp_pool is None:
        return ShapePrior(EXACT_SHAPE[pool], 0.01)
    loglik = shape_log_likelihood(logp_pool)
    w = np.exp(loglik - loglik.max())
    mean = float(np.sum(w * SHAPE_GRID) / w.sum())
    return ShapePrior(mean, max(float(np.sqrt(np.sum(w * (SHAPE_GRID - mean) ** 2) / w.sum())), 0.01))


def members(group: str) -> list[tuple[str, str, int]]:
    """(label, pool, occurrence) of each behavior in a group; repeats of one family get #2, #3."""
    out, seen = [], {}
    for pool in GROUPS[group]:
        i = seen[pool] = seen.get(pool, -1) + 1
        out.append((pool if i == 0 else f"{pool} #{i + 1}", pool, i))
    return out


def run_task(task) -> list[dict]:
    """Every split of one (group, m): per behavior, each method's errors at the quantile grid and coverage."""
    group, m, splits, real = task  # splits: a range
    oracle = {pool: shape_oracle(pool, real.get(pool)) for _, pool, _ in members(group)}
    rows = []
    for split in splits:
        data = {}
        for label, pool, i in members(group):
            rng = np.random.default_rng([zlib.crc32(pool.encode()), m, split] + ([i] if i else []))
            scores, truth, n, _ = fa.split_truths(pool, m, rng, real.get(pool))
            data[label] = (pool, scores, n, truth["worst_query_risk"])
        for label, (pool, scores, n, t) in data.items():
            others = [s for other, (_, s, _, _) in data.items() if other != label]
            try:
                pooled = rc.pooled_shape_prior(others).params()
            except rc.ForecastError:
                pooled = None
            settings = {"default": {}, "pooled": pooled, "shape oracle": oracle[pool].params()}
            errors = {"gumbel-ols": pw.gumbel_errors(scores, n, t)[None, :]}
            covered = {}
            for method, kwargs in settings.items():
                if kwargs is None:
                    errors[method] = np.full((len(fa.QUANTILES), len(n)), np.nan)
                    covered[method] = np.zeros(len(n), bool)
                else:
                    errors[method], covered[method] = pw.quantile_errors(scores, "gpd-bayes", kwargs, n, t, split)
            rows.append(
                {
                    "group": group,
                    "behavior": label,
                    "m": m,
                    "split": split,
                    "pooled_prior": pooled,
                    "errors": {k: v.tolist() for k, v in errors.items()},
                    "covered": {k: v.tolist() for k, v in covered.items()},
                }
            )
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Per (group, behavior, method): MAE and underestimation at each reading, coverage; pooled over m and
    both multiples (each split and multiple weighs the same)."""
    table = []
    for group in dict.fromkeys(r["group"] for r in rows):
        for label in dict.fromkeys(r["behavior"] for r in rows if r["group"] == group):
            rs = [r for r in rows if r["group"] == group and r["behavior"] == label]
            err = {meth: np.array([r["errors"][meth] for r in rs]) for meth in METHODS}  # (splits, Q or 1, n)
            common = np.all([~np.isnan(err[meth][:, 0]) for meth in METHODS], axis=0)  # (splits, n)
            gumbel_mae = float(np.mean(np.abs(err["gumbel-ols"][:, 0][common])))
            for meth in METHODS:
                row = {"group": group, "behavior": label, "method": meth}
                for name, i in READ.items():
                    e = err[meth][:, 0 if meth == "gumbel-ols" else i]
                    mae = float(np.mean(np.abs(e[common])))
                    row[f"mae {name}"] = mae
                    row[f"ratio {name}"] = mae / gumbel_mae
                    row[f"under {name}"] = float(np.mean(np.nan_to_num(e, nan=-1) < 0))
                cov = [r["covered"][meth] for r in rs if meth in r["covered"]]
                row["coverage"] = float(np.mean(cov)) if cov else None
                table.append(row)
    return table


def group_ratios(table: list[dict]) -> dict:
    """Geometric mean over each group's behaviors of the MAE ratio to gumbel-ols, per method and reading."""
    out: dict = {}
    for group in dict.fromkeys(r["group"] for r in table):
        for meth in METHODS[1:]:
            rs = [r for r in table if r["group"] == group and r["method"] == meth]
            out.setdefault(group, {})[meth] = {
                name: float(np.exp(np.mean(np.log([r[f"ratio {name}"] for r in rs])))) for name in READ
            }
    return out


def matched(rows: list[dict]) -> dict:
    """Per group and method: q*, the smallest quantile whose underestimation (mean over the group's behaviors)
    is at most gumbel-ols's, and the geometric mean MAE ratio there; q* is None when even 0.95 underestimates
    more often (the ratio is then read at 0.95)."""
    out: dict = {}
    for group in dict.fromkeys(r["group"] for r in rows):
        rs = [r for r in rows if r["group"] == group]
        labels = list(dict.fromkeys(r["behavior"] for r in rs))
        err = {
            meth: [np.array([r["errors"][meth] for r in rs if r["behavior"] == b]) for b in labels] for meth in METHODS
        }
        target = np.mean([np.mean(np.nan_to_num(e, nan=-1) < 0) for e in err["gumbel-ols"]])
        for meth in METHODS[1:]:
            under = np.mean([np.mean(np.nan_to_num(e, nan=-1) < 0, axis=(0, 2)) for e in err[meth]], axis=0)
            q_star = fa.matched_index(under, target)
            i = len(fa.QUANTILES) - 1 if q_star is None else q_star
            ratio = [np.nanmean(np.abs(e[:, i])) / np.nanmean(np.abs(g)) for e, g in zip(err[meth], err["gumbel-ols"])]
            out.setdefault(group, {})[meth] = {
                "q_star": None if q_star is None else float(fa.QUANTILES[i]),
                "underestimation": float(under[i]),
                "gumbel_ols_underestimation": float(target),
                "mae_ratio_geomean": float(np.exp(np.mean(np.log(ratio)))),
            }
    return out


def markdown(table: list[dict], ratios: dict, matches: dict, meta: dict) -> str:
    fmt = lambda v, f: "n/a" if v is None else format(v, f)  # noqa: E731
    lines = [
        "# Pooling the tail's shape across behaviors\n",
        f"Generated by `{meta['command']}` on {meta['machine']} ({meta['date']}, {meta['seconds']:.0f} s): "
        f"{meta['splits']} splits per (group, m) from split {meta['first_split']}, m in {meta['m']} "
        f"(real pools: {meta['m_real']}), 200 draws per fit; worst-query risk at 100x and 1,000x pooled, truth "
        "the realized deployment maximum. Ratios are "
        "MAE over gumbel-ols's on the same splits; `q=0.6` is the shared quantile matched to gumbel-ols's "
        "underestimation in forecast-accuracy.md. See the script's docstring for the methods.\n",
        "\n## Geometric mean of the MAE ratio to gumbel-ols, per group\n",
        "| group | method | ratio at median | ratio at q=0.6 |",
        "|---|---|---|---|",
    ]
    for group, by_method in ratios.items():
        for meth, r in by_method.items():
            lines.append(f"| {group} | {meth} | {r['median']:.2f} | {r['q=0.6']:.2f} |")
    lines += [
        "\n## At matched underestimation, per group\n",
        "Each method read at its own q*: the smallest quantile whose underestimation, averaged over the group's "
        "behaviors, is no higher than gumbel-ols's (MAE here is over each method's fitted splits).\n",
        "| group | method | q* | underestimates | gumbel-ols underestimates | MAE ratio (geometric mean) |",
        "|---|---|---|---|---|---|",
    ]
    for group, by_method in matches.items():
        for meth, r in by_method.items():
            q = "none (read at 0.95)" if r["q_star"] is None else f"{r['q_star']:.2f}"
            lines.append(
                f"| {group} | {meth} | {q} | {r['underestimation']:.0%} | {r['gumbel_ols_underestimation']:.0%} | "
                f"{r['mae_ratio_geomean']:.2f} |"
            )
    lines += [
        "\n## Every behavior\n",
        "| group | behavior | method | MAE median | MAE q=0.6 | ratio median | ratio q=0.6 | under median "
        "| under q=0.6 | 90% coverage |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        lines.append(
            f"| {r['group']} | {r['behavior']} | {r['method']} | {r['mae median']:.2f} | {r['mae q=0.6']:.2f} | "
            f"{r['ratio median']:.2f} | {r['ratio q=0.6']:.2f} | {r['under median']:.0%} | "
            f"{r['under q=0.6']:.0%} | {fmt(r['coverage'], '.0%')} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--splits", type=int, default=50)
    ap.add_argument("--first-split", type=int, default=0, help="index of the first split (a held-out block)")
    ap.add_argument("--groups", nargs="*", default=list(GROUPS))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", help="write every split's errors and the tables as one JSON object")
    ap.add_argument("--markdown", help="write the tables as Markdown (for docs/)")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    real = fa.real_pools()
    tasks = [
        (
            group,
            m,
            range(args.first_split, args.first_split + args.splits),
            {p: real[p] for p in GROUPS[group] if p in real},
        )
        for group in args.groups
        for m in ([100, 300] if GROUPS[group][0] in real else [100, 1000])
    ]
    t0 = time.time()
    rows = fa.run_cells(run_task, tasks, args.jobs, unit="(group, m) cells")
    table = summarize(rows)
    ratios = group_ratios(table)
    matches = matched(rows)
    meta = {
        "command": "python benchmarks/shape_pooling.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": fa.machine_name(),
        "date": time.strftime("%Y-%m-%d"),
        "splits": args.splits,
        "first_split": args.first_split,
        "m": [100, 1000],
        "m_real": [100, 300],
        "seconds": time.time() - t0,
        "rarecast": rc.__version__,
    }
    print(json.dumps(matches, indent=1))
    if args.out:
        doc = {"meta": meta, "ratios": ratios, "matched": matches, "table": table, "splits": rows}
        Path(args.out).write_text(json.dumps(doc) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(markdown(table, ratios, matches, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
