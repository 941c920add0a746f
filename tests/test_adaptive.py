"""Adaptive sampling: bounds, the stopping rule and the round loop on simulated counts (no model)."""

from __future__ import annotations

import numpy as np
import pytest

from rarecast.elicitation.adaptive import AdaptivePlan, bounds, round_seed, sample_adaptively, still_open
from rarecast.errors import InputError


def test_clopper_pearson_bounds_bracket_the_estimate():
    lower, upper = bounds(np.array([0, 5, 20, 0]), np.array([20, 20, 20, 0]), 0.9)
    assert lower[0] == 0 and upper[0] == pytest.approx(1 - 0.1 ** (1 / 20))
    assert lower[1] < 0.25 < upper[1]
    assert upper[2] == 1 and lower[2] == pytest.approx(0.1 ** (1 / 20))
    assert (lower[3], upper[3]) == (0, 1)  # no trials: nothing known


def test_settled_queries_stop_and_top_candidates_go_on():
    plan = AdaptivePlan(first=10, max_trials=200, confidence=0.9, keep=2)
    s = np.array([50, 48, 0, 1, 1])
    n = np.array([100, 100, 100, 100, 5])
    open_ = still_open(s, n, plan)
    # Two queries are confidently near p = 0.5: the zeros at 100 trials cannot reach them, so they stop;
    # the top two (whose rank matters) and the query with 1 of 5 (upper bound 0.58) keep sampling.
    assert open_.tolist() == [True, True, False, False, True]
    # At the cap nothing samples further.
    assert not still_open(s, np.full(5, 200), plan).any()


def test_rounds_record_honest_counts_and_spend_samples_on_the_top():
    rng = np.random.default_rng(0)
    p = np.concatenate([np.full(5, 0.4), np.full(195, 1e-4)])
    calls = []

    def draw(idx, hits, done, new):
        calls.append((idx.copy(), done.copy(), new.copy()))
        return rng.binomial(new, p[idx])

    plan = AdaptivePlan(first=10, growth=2.0, max_trials=320, keep=5)
    s, n = sample_adaptively(np.zeros(200), np.zeros(200), draw, plan)
    # Every trial drawn is counted once, and successes never exceed trials.
    assert n.sum() == sum(int(c[2].sum()) for c in calls) and np.all(s <= n)
    assert np.all(n[:5] == 320)  # the tail candidates reach the cap
    assert np.median(n[5:]) <= 40  # the body stops after a few rounds
    assert n.sum() < 0.25 * 200 * 320
    # Rounds continue from the counts: trials grow along the plan's schedule.
    assert calls[0][1].tolist() == [0] * 200 and set(calls[1][1].tolist()) == {10}


def test_resuming_from_counts_continues_the_same_schedule():
    plan = AdaptivePlan(first=10, growth=2.0, max_trials=80, keep=1)
    p = np.array([0.5, 0.01, 0.02])

    def draw(idx, hits, done, new):  # deterministic: the expected count, so both runs see the same data
        return np.floor(new * p[idx]).astype(int)

    full = sample_adaptively(np.zeros(3), np.zeros(3), draw, plan)
    first_round = (np.floor(10 * p).astype(int), np.full(3, 10))
    resumed = sample_adaptively(*first_round, draw, plan)
    assert [a.tolist() for a in full] == [a.tolist() for a in resumed]


def test_round_seeds_differ_by_round_and_plan_is_checked():
    assert round_seed(0, 0) != round_seed(0, 10) and round_seed(0, 10) == round_seed(0, 10)
    with pytest.raises(InputError):
        AdaptivePlan(first=0)
    with pytest.raises(InputError):
        AdaptivePlan(growth=1.0)


@pytest.mark.slow
def test_adaptive_scoring_with_the_embedded_model_stores_counts_and_resumes(tmp_path, smollm2_backend):
    from rarecast.elicitation.adaptive import Adaptive
    from rarecast.elicitation.behaviors import load_behavior
    from rarecast.elicitation.scoring import score
    from rarecast.queries import Query
    from rarecast.store import Store, load_scores

    behavior = load_behavior(
        {
            "name": "says-yes",
            "kind": "sampled",
            "k": 4,
            "max_tokens": 2,
            "grader": {"kind": "regex", "pattern": "(?i)yes|sure"},
        }
    )
    queries = [
        Query(id="q0", prompt="Answer yes or no: is the sky blue?"),
        Query(id="q1", prompt="Count to ten."),
        Query(id="q2", prompt="Name a color."),
    ]
    plan = AdaptivePlan(first=1, growth=2.0, max_trials=4, keep=1)
    with Store(tmp_path / "run.db") as store:
        first = Adaptive(plan)
        summary = score(queries, smollm2_backend, behavior, store, policy=first, progress=False)
        s, n = first.successes.copy(), first.trials.copy()
        tokens = smollm2_backend.tokens_processed
        again = Adaptive(plan)
        resumed = score(queries, smollm2_backend, behavior, store, policy=again, progress=False)
        assert smollm2_backend.tokens_processed == tokens  # nothing left to draw: resumed from the store
    assert [again.successes.tolist(), again.trials.tolist()] == [s.tolist(), n.tolist()]
    assert (summary.scored, summary.failed) == (3, 0) and (resumed.scored, resumed.skipped) == (0, 3)
    assert np.all((n >= 1) & (n <= 4)) and np.all(s <= n)
    scores, provenance = load_scores(tmp_path / "run.db")
    assert scores.successes.tolist() == s.tolist() and scores.trials.tolist() == n.tolist()
    assert provenance["decoding"]["adaptive"]["max_trials"] == 4
