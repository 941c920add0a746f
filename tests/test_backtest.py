"""Backtest: truths on hand-checkable pools, metrics by hand, disjoint splits, agreement with fit_tail, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import run_process

import rarecast
from rarecast.errors import InputError
from rarecast.evaluation.backtest import (
    ROW_KEYS,
    Cell,
    backtest,
    draw_splits,
    forecast_vs_actual,
    realized_truths,
)
from rarecast.evaluation.synthetic import FAMILIES
from rarecast.scores import logp_from_psi


def run_cli(*args):
    return run_process(*args, timeout=120)


def test_realized_truths_by_hand():
    p = np.array([[0.5, 0.1, 0.9, 0.2]])
    t = realized_truths(np.log(p), np.array([2.0, 4.0]), tau=0.3)
    np.testing.assert_allclose(t["worst_query_risk"], [[0.5, 0.9]])
    np.testing.assert_allclose(t["behavior_frequency"], [[1 / 2, 2 / 4]])
    # 1 - (0.5 * 0.9) and 1 - (0.5 * 0.9 * 0.1 * 0.8)
    np.testing.assert_allclose(t["aggregate_risk"], [[0.55, 0.964]])


def test_aggregate_truth_is_exact_for_tiny_p():
    logp = np.full((1, 1000), np.log(1e-20))
    t = realized_truths(logp, np.array([1000.0]), tau=0.5)
    assert t["aggregate_risk"][0, 0] == pytest.approx(1000 * 1e-20, rel=1e-9)  # 1 - (1-p)^n would give 0


def test_metrics_by_hand():
    truth = np.full(4, 1e-2)
    cell = Cell(
        "x",
        "worst_query_risk",
        10,
        100,
        forecast=np.array([1e-3, 1e-1, 1e-5, np.nan]),
        low=np.array([1e-4, 1e-3, 1e-6, 0.0]),
        high=np.array([1e-2, 1e-1, 1e-4, 1.0]),
        truth=truth,
        floor=1e-300,
    )
    got = cell.metrics()
    assert got["mae_log10"] == pytest.approx(5 / 3)  # |-1|, |+1|, |-3| over the 3 finite forecasts
    assert got["within_1oom"] == pytest.approx(2 / 3)
    assert got["underestimation"] == pytest.approx(2 / 3)
    assert got["coverage"] == pytest.approx(2 / 3)  # the third interval ends at 1e-4 < 1e-2
    assert (got["trials"], got["failed"]) == (3, 1)


def test_frequency_floor_makes_unobservable_fractions_equal():
    cell = Cell(
        "x",
        "behavior_frequency",
        10,
        1000,
        forecast=np.array([1e-9]),
        low=np.array([0.0]),
        high=np.array([1e-3]),
        truth=np.array([0.0]),
        floor=1e-3,
    )
    got = cell.metrics()
    assert got["mae_log10"] == 0 and got["underestimation"] == 0 and got["coverage"] == 1


def test_splits_are_disjoint():
    pool = np.log(np.arange(1, 41) / 100.0)  # 40 distinct values
    splits = draw_splits(pool, 10, np.array([30.0]), trials=25, tau=0.5, rng=np.random.default_rng(3))
    for row, worst in zip(splits.eval_logp, splits.truth["worst_query_risk"][:, 0]):
        deploy = np.setdiff1d(pool, row)  # the 30 queries not in the evaluation split
        assert len(np.unique(row)) == 10 and worst == pytest.approx(np.exp(deploy.max()))


def test_pool_too_small_is_an_input_error():
    with pytest.raises(InputError, match="fewer than max m"):
        backtest(np.log(np.linspace(0.01, 0.5, 500)), ["gumbel-ols"], m=[100], n=[1000], trials=2)


@pytest.mark.parametrize("method", ["gumbel-ols", "gpd-bayes"])
def test_batched_forecasts_equal_fit_tail(method):
    """The vectorized path (gumbel-ols) and the looped one (gpd-bayes) both reproduce the public API."""
    pool = logp_from_psi(FAMILIES["exponential"].sample_psi(np.random.default_rng(0), 3000))
    res = backtest(pool, [method], m=[200], n=[1000], trials=4, n_draws=50, seed=7)
    splits = draw_splits(pool, 200, np.array([1000.0]), 4, 0.5, np.random.default_rng(7))
    cell = next(c for c in res.cells if c.risk == "worst_query_risk")
    for t in range(4):
        fit = rarecast.fit_tail(splits.eval_logp[t], method, n_draws=50, seed=7 + t)
        assert cell.forecast[t] == pytest.approx(fit.worst_query_risk(1000), rel=1e-9)
        assert (cell.low[t], cell.high[t]) == pytest.approx(fit.interval("worst_query_risk", 1000), rel=1e-9)


def test_right_model_beats_wrong_model_on_a_known_pool():
    """On an exponential-tail pool the exponential POT fit is accurate; the log-normal fit underestimates."""
    pool = logp_from_psi(FAMILIES["exponential"].sample_psi(np.random.default_rng(1), 60_000))
    res = backtest(pool, ["exponential", "lognormal"], m=[1000], n=[10_000], trials=60, n_draws=50)
    rows = {r["method"]: r for r in res.rows() if r["risk"] == "worst_query_risk"}
    assert rows["exponential"]["mae_log10"] < 0.8 and rows["exponential"]["within_1oom"] > 0.75
    assert rows["lognormal"]["underestimation"] > 0.9 and rows["lognormal"]["mae_log10"] > 2.0


def test_truths_and_metrics_against_a_family_with_known_answers():
    """Deployment truths drawn from a large pool of a synthetic family match the family's exact risks.

    An oracle forecast of worst-query risk (the exact top-1/n quantile) is below the realized max of n queries
    with probability 1 - (1 - 1/n)^n (about 63%); the realized fraction above tau and the realized aggregate
    risk average to the family's exact values.
    """
    fam, n, trials = FAMILIES["exponential"], 1000, 400
    pool = logp_from_psi(fam.sample_psi(np.random.default_rng(5), 200_000))
    tau = float(np.exp(np.quantile(pool, 1 - 1e-2)))  # about 1% of queries above tau
    splits = draw_splits(pool, 10, np.array([float(n)]), trials, tau, np.random.default_rng(6))
    oracle = np.full(trials, fam.true_worst_query_risk(n))
    cell = Cell(
        "oracle", "worst_query_risk", 10, n, oracle, oracle, oracle, splits.truth["worst_query_risk"][:, 0], 1e-300
    )
    assert cell.metrics()["underestimation"] == pytest.approx(1 - (1 - 1 / n) ** n, abs=0.08)
    assert splits.truth["behavior_frequency"].mean() == pytest.approx(fam.true_behavior_frequency(tau), rel=0.1)
    assert splits.truth["aggregate_risk"].mean() == pytest.approx(fam.true_aggregate_risk(n), rel=0.15)


def test_cli_json_rows(tmp_path):
    pool = logp_from_psi(FAMILIES["exponential"].sample_psi(np.random.default_rng(2), 2500))
    f = tmp_path / "pool.jsonl"
    f.write_text("".join(json.dumps({"logp": float(v)}) + "\n" for v in pool))
    out = run_cli(
        "backtest",
        str(f),
        "--m",
        "100",
        "--n",
        "1000",
        "--n",
        "2e3",
        "--trials",
        "5",
        "--draws",
        "20",
        "--method",
        "gumbel-ols",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) == 6 and all(set(ROW_KEYS) <= set(r) for r in rows)
    assert {r["risk"] for r in rows} == {"worst_query_risk", "behavior_frequency", "aggregate_risk"}


def test_plot_is_a_png():
    pool = logp_from_psi(FAMILIES["exponential"].sample_psi(np.random.default_rng(2), 1500))
    res = backtest(pool, ["gumbel-ols", "lognormal"], m=[100], n=[1000], trials=5, n_draws=0)
    assert forecast_vs_actual(res)[:4] == b"\x89PNG"
    assert all(np.isnan(r["coverage"]) for r in res.rows())  # no draws, no intervals


def test_cli_bad_row_exits_2(tmp_path):
    f = tmp_path / "pool.jsonl"
    f.write_text('{"logp": -1.0}\n{"logp": 0.5}\n')
    out = run_cli("backtest", str(f), "--trials", "2")
    assert out.returncode == 2
    assert "pool.jsonl" in out.stderr and "row 2" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_docstring_example():
    import doctest

    import rarecast.evaluation.backtest

    result = doctest.testmod(rarecast.evaluation.backtest)
    assert result.attempted > 0 and result.failed == 0
