"""Allocation: queries bought, the choice rule, recommendations whose right answer is known, the CLI."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from cli_helpers import CLI

from rarecast.errors import InputError
from rarecast.evaluation.allocate import (
    Generator,
    allocate,
    backtest_allocation,
    choose,
    queries_bought,
)
from rarecast.evaluation.synthetic import FAMILIES
from rarecast.scores import Scores, logp_from_psi


def pool(seed: int, size: int, shift: float = 0.0) -> np.ndarray:
    """Exact log p with an exponential tail in psi, moved up by ``shift`` (a stronger generator)."""
    return logp_from_psi(FAMILIES["exponential"].sample_psi(np.random.default_rng(seed), size) + shift)


def test_queries_bought():
    assert queries_bought(1000, 3) == 333
    with pytest.raises(InputError, match="buys no query"):
        queries_bought(1, 10)


def test_choose_skips_failed_fits():
    got = choose(np.array([[0.1, 0.3], [np.nan, 1e-9], [np.nan, np.nan], [0.2, 0.2]]))
    assert got.tolist() == [1, 1, -1, 0]


def test_bad_cost_is_an_input_error():
    with pytest.raises(InputError, match="cost per query"):
        Generator("a", Scores.from_logp(pool(0, 100)), 0.0)


def test_stronger_generator_at_equal_cost_is_recommended():
    gens = [
        Generator("weak", Scores.from_logp(pool(0, 1000)), 1.0),
        Generator("strong", Scores.from_logp(pool(1, 1000, shift=3.0)), 1.0),
    ]
    result = allocate(gens, 1e5, method="gumbel-ols", n_draws=200)
    assert result.choice == "strong"
    weak, strong = result.forecasts
    assert weak.queries == strong.queries == 100_000
    assert strong.worst_query_risk[0] > weak.worst_query_risk[0]
    assert all(f.worst_query_risk[1] <= f.worst_query_risk[0] <= f.worst_query_risk[2] for f in result.forecasts)


def test_cheaper_generator_of_the_same_distribution_is_recommended():
    """Same query distribution, 100x cheaper: it buys 100x the queries, so its worst query is worse."""
    gens = [
        Generator("dear", Scores.from_logp(pool(0, 1000)), 100.0),
        Generator("cheap", Scores.from_logp(pool(1, 1000)), 1.0),
    ]
    result = allocate(gens, 1e4, method="exponential", n_draws=200)
    assert result.choice == "cheap" and [f.queries for f in result.forecasts] == [100, 10_000]


def test_backtest_of_the_decision_on_a_known_case():
    """A 3-decade stronger generator at 10x the cost still wins; forecasts find that nearly always."""
    rows = backtest_allocation(
        [pool(0, 20_000, shift=3.0), pool(1, 20_000)], [10.0, 1.0], [1e3, 1e4], m=300, trials=40, method="gumbel-ols"
    )
    assert [r["queries"] for r in rows] == [[100, 1000], [1000, 10_000]]
    for r in rows:
        assert r["trials"] == 40 and r["accuracy"] >= 0.9 and r["mattered"] >= 0.9


def test_cli_mismatched_costs_exit_2(tmp_path):
    f1, f2 = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for f in (f1, f2):
        f.write_text("".join(json.dumps({"logp": float(v)}) + "\n" for v in pool(0, 200)))
    cmd = [
        *CLI,
        "allocate",
        str(f1),
        str(f2),
        "--cost",
        "1",
        "--budget",
        "100",
    ]
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "one --cost per score file" in out.stderr


def test_cli_json_recommendation(tmp_path):
    f1, f2 = tmp_path / "weak.jsonl", tmp_path / "strong.jsonl"
    f1.write_text("".join(json.dumps({"logp": float(v)}) + "\n" for v in pool(0, 500)))
    f2.write_text("".join(json.dumps({"logp": float(v)}) + "\n" for v in pool(1, 500, shift=3.0)))
    cmd = [
        *CLI,
        "allocate",
        str(f1),
        str(f2),
        "--cost",
        "1",
        "--cost",
        "1",
        "--budget",
        "1e4",
        "--method",
        "gumbel-ols",
        "--json",
    ]
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    (result,) = json.loads(out.stdout)
    assert result["choice"] == "strong" and len(result["generators"]) == 2
