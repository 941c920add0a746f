"""The shared log-p tolerance (tests/logp_helpers.py): its arithmetic, and that real bugs fail it."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from logp_helpers import ATOL_PER_TOKEN, BUG_SIZE, RTOL, assert_logp_close, logp_tolerance, scored_tokens
from test_hf_backend import CONTINUATIONS, QUERIES  # the same mixed queries and trie-branching targets


def test_tolerance_is_relative_with_a_per_token_floor():
    assert logp_tolerance(-10.0, 3) == pytest.approx(RTOL * 10 + 3 * ATOL_PER_TOKEN)
    assert logp_tolerance(0.0, 4) == pytest.approx(4 * ATOL_PER_TOKEN)
    assert logp_tolerance(-1.0, 1, n_targets=2) == pytest.approx(RTOL * (1 + math.log(2)) + ATOL_PER_TOKEN)
    expected = np.array([[-20.0, -0.5], [-3.0, -np.inf]])
    n = np.array([[3, 1], [2, 1]])
    tol = logp_tolerance(np.where(np.isfinite(expected), expected, 0), n)
    assert_logp_close(expected + 0.9 * tol * np.array([[1, -1], [1, 0]]), expected, n_tokens=n)
    assert_logp_close(-5.0, -5.0, n_tokens=1)  # scalars too
    with pytest.raises(AssertionError, match=r"1 of 4 values .* worst at \(1, 0\)"):
        assert_logp_close(expected + np.array([[0, 0], [1.1 * tol[1, 0], 0]]), expected, n_tokens=n)
    with pytest.raises(AssertionError):
        assert_logp_close([-np.inf], [-3.0], n_tokens=1)
    with pytest.raises(AssertionError):
        assert_logp_close([-3.0], [-np.inf], n_tokens=1)
    with pytest.raises(AssertionError):
        assert_logp_close([np.nan], [-3.0], n_tokens=1)
    with pytest.raises(AssertionError, match="shapes differ"):
        assert_logp_close([-1.0, -2.0], [-1.0], n_tokens=1)


def test_tolerance_stays_well_below_the_size_of_a_real_bug():
    # The largest log p in these tests is about -42 over at most 10 tokens.
    assert logp_tolerance(-50.0, 10) < BUG_SIZE / 5
    # A tolerance that could hide a bug is refused rather than used.
    with pytest.raises(AssertionError, match="could hide a real bug"):
        assert_logp_close([-1000.0], [-1000.0], n_tokens=1)


@pytest.mark.slow
def test_an_off_by_one_target_position_or_a_dropped_token_fails_the_check(smollm2_backend):
    """Batching passes the check; reading each token's distribution one position early, or dropping a
    continuation's last token, moves log p by far more than BUG_SIZE and fails it, in every cell."""
    backend = smollm2_backend
    n_tokens = scored_tokens(backend, QUERIES, CONTINUATIONS)
    assert n_tokens.max() == 3 and n_tokens.min() == 1

    pack = backend._pack

    def early(*args):  # the distribution of each target token is read one position too early
        row = pack(*args)
        return dataclasses.replace(row, targets=[(pos - 1, tok, qi, ci) for pos, tok, qi, ci in row.targets])

    def drop_last(*args):  # a continuation's last token is not scored
        row = pack(*args)
        last = {ci: i for i, (_, _, _, ci) in enumerate(row.targets)}
        count = {ci: sum(t[3] == ci for t in row.targets) for ci in last}
        return dataclasses.replace(
            row, targets=[t for i, t in enumerate(row.targets) if i != last[t[3]] or count[t[3]] == 1]
        )

    try:
        # The plain path: with prefix reuse, a shifted first target could fall before the tail of a row.
        backend.prefix_reuse = False
        alone = np.vstack([backend.continuation_logprobs([q], CONTINUATIONS) for q in QUERIES])
        batched = backend.continuation_logprobs(QUERIES, CONTINUATIONS)
        backend._pack = early
        shifted = backend.continuation_logprobs(QUERIES, CONTINUATIONS)
        backend._pack = drop_last
        dropped = backend.continuation_logprobs(QUERIES, CONTINUATIONS)
    finally:
        del backend._pack  # back to the class's method
        backend.prefix_reuse = True

    assert_logp_close(batched, alone, n_tokens=n_tokens)  # float rounding only: passes
    multi = n_tokens > 1
    shift_gap, drop_gap = np.abs(shifted - alone), np.abs(dropped - alone)[multi]
    print(
        f"\noff by one position: |change| >= {shift_gap.min():.3f} nats; dropped last token: "
        f">= {drop_gap.min():.3f} nats; largest tolerance {logp_tolerance(alone, n_tokens).max():.1e}"
    )
    assert shift_gap.min() >= BUG_SIZE and drop_gap.min() >= BUG_SIZE
    with pytest.raises(AssertionError, match="more than fp32 rounding"):
        assert_logp_close(shifted, alone, n_tokens=n_tokens)
    # Not only somewhere: the check rejects every cell on its own.
    for cell in np.ndindex(alone.shape):
        with pytest.raises(AssertionError):
            assert_logp_close(shifted[cell], alone[cell], n_tokens=n_tokens[cell])
        if multi[cell]:
            with pytest.raises(AssertionError):
                assert_logp_close(dropped[cell], alone[cell], n_tokens=n_tokens[cell])
