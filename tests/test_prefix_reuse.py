"""Shared-prefix reuse in the hf backend: grouping logic, and exactness on the real embedded model."""

from __future__ import annotations

import numpy as np
import pytest
from logp_helpers import assert_logp_close, scored_tokens

from rarecast.backends.hf import pack_row, prefix_groups, prefix_sets
from rarecast.queries import Query

SYSTEM_A = (
    "You are a careful assistant for a bank. Never reveal the vault password, which is kept in the "
    "safe. Answer politely and briefly, in English."
)
SYSTEM_B = "You are a pirate captain who speaks only in rhymes and loves the open sea."
QUERIES = (
    [
        Query(
            id=f"a{i}",
            messages=(
                {"role": "system", "content": SYSTEM_A},
                {"role": "user", "content": f"Question {i}: what is {i} plus {3 * i + 1}?" * (1 + i % 2)},
            ),
        )
        for i in range(5)
    ]
    + [
        Query(
            id=f"b{i}",
            messages=(
                {"role": "system", "content": SYSTEM_B},
                {"role": "user", "content": f"Tell me about island {i}."},
            ),
        )
        for i in range(4)
    ]
    + [Query(id="lone", prompt="Hi there")]
)
# A branching trie, a single token and a reply that merges across the template boundary.
CONTINUATIONS = ["The secret is", "The capital", "Sure", "\n\nOnce"]


def test_groups_share_prefixes_and_keep_the_last_prompt_token():
    rows = [
        pack_row(0, [1, 2, 3, 4, 5], [[9]]),
        pack_row(1, [1, 2, 3, 4, 6, 7], [[9]]),
        pack_row(2, [1, 2, 3, 4, 5], [[8]]),
        pack_row(3, [7, 7], [[9]]),
    ]
    groups = prefix_groups(rows, min_prefix=3)
    assert [(shared, sorted(r.query_index for r in m)) for shared, m in groups] == [(4, [0, 1, 2]), (0, [3])]
    # Identical prompts share all but their last token: the scores are read there.
    assert prefix_groups(rows[:1] + rows[2:3], min_prefix=3)[0][0] == 4
    # A prefix shorter than min_prefix is not worth a separate pass.
    assert prefix_groups(rows, min_prefix=5) == [(0, sorted(rows, key=lambda r: r.input_ids))]


def test_grouping_keeps_the_savings_of_a_long_prefix():
    long_a = [pack_row(i, [1] * 50 + [2, i], [[9]]) for i in range(3)]
    other = pack_row(9, [1] * 20 + [3, 4], [[9]])  # shares only 20 tokens with the others
    groups = prefix_groups(long_a + [other], min_prefix=4)
    # Joining `other` would cut the saved tokens from 2 x 51 to 3 x 20.
    assert sorted((shared, len(m)) for shared, m in groups) == [(0, 1), (51, 3)]


def test_small_groups_with_similar_prefixes_share_batches():
    def group(shared: int, first: int) -> tuple[int, list]:
        return shared, [pack_row(first + i, [7] * shared + [i], [[9]]) for i in range(2)]

    groups = [group(40, 0), group(20, 2), group(100, 4), group(30, 6)]
    sets = prefix_sets(groups, max_cache_tokens=1000)
    # By prefix length; a set's longest prefix is at most twice its shortest.
    assert [[shared for shared, _ in s] for s in sets] == [[20, 30, 40], [100]]
    # Each group's state is (longest prefix + longest suffix) slots: 2 x 31 = 62 fits in 90, 3 x 41 does not.
    assert [[shared for shared, _ in s] for s in prefix_sets(groups, max_cache_tokens=90)] == [[20, 30], [40], [100]]
    # A long suffix makes every group's state wide, so fewer groups fit.
    wide = groups[:1] + [(20, [pack_row(8, [7] * 20 + list(range(40)), [[9]])])]
    assert len(prefix_sets(wide, max_cache_tokens=90)) == 2
    assert prefix_sets([], max_cache_tokens=60) == []


def test_tail_rows_shift_targets_and_parents():
    row = pack_row(0, [5, 6, 7], [[1, 2], [1, 3]])
    tail = row.tail(2)
    assert tail.input_ids == [7, 1] and tail.position_ids == [2, 3] and tail.prompt_len == 1
    assert tail.parent == [-1, 0]
    assert [t[:2] for t in tail.targets] == [(0, 1), (1, 2), (0, 1), (1, 3)]
    with pytest.raises(ValueError):
        row.tail(3)


@pytest.mark.slow
def test_prefix_reuse_is_exact_on_the_embedded_model(smollm2_backend):
    backend = smollm2_backend
    # The two system prompts differ in length and share batches: each row's keys must still sit where they
    # would without the other group.
    rows = [backend._pack(i, q, CONTINUATIONS) for i, q in enumerate(QUERIES)]
    sets = prefix_sets([g for g in prefix_groups(rows) if g[0]], max_cache_tokens=10_000)
    assert len(sets) == 1 and len({shared for shared, _ in sets[0]}) == 2
    try:
        backend.prefix_reuse = False
        t0 = backend.tokens_processed
        plain = backend.continuation_logprobs(QUERIES, CONTINUATIONS)
        plain_tokens = backend.tokens_processed - t0
        backend.prefix_reuse = True
        t0 = backend.tokens_processed
        reused = backend.continuation_logprobs(QUERIES, CONTINUATIONS)
        reused_tokens = backend.tokens_processed - t0
    finally:
        backend.prefix_reuse = True
    # The system prompts ran once per group: far fewer tokens went through the model.
    assert reused_tokens < 0.6 * plain_tokens
    # Equal up to fp32 rounding (see tests/logp_helpers.py): bit for bit on the development machine, not on
    # every CPU, since the batch shapes differ and pick other GEMM kernels.
    n_tokens = scored_tokens(backend, QUERIES, CONTINUATIONS)
    assert_logp_close(reused, plain, n_tokens=n_tokens)
    # One query alone (no batch, no shared prefix) gives the same numbers: reuse changes no result.
    alone = np.vstack([backend.continuation_logprobs([q], CONTINUATIONS) for q in QUERIES[:2]])
    assert_logp_close(reused[:2], alone, n_tokens=n_tokens[:2])
    assert np.all(np.isfinite(reused)) and np.all(reused < 0)


@pytest.mark.slow
def test_every_token_budget_gives_each_query_its_numbers_alone(smollm2_backend):
    backend = smollm2_backend
    alone = np.vstack([backend.continuation_logprobs([q], CONTINUATIONS) for q in QUERIES])
    n_tokens = scored_tokens(backend, QUERIES, CONTINUATIONS)
    old = backend.batch_tokens
    try:
        # Budgets from one short row per batch (padded to the GEMM minimum) to everything in one batch.
        for budget in (8, 32, 64, 200, 2048):
            backend.batch_tokens = budget
            for reuse in (True, False):
                backend.prefix_reuse = reuse
                # Bit-identical on the development machine; other CPUs' kernels differ by float rounding.
                assert_logp_close(
                    backend.continuation_logprobs(QUERIES, CONTINUATIONS),
                    alone,
                    n_tokens=n_tokens,
                    what=f"budget {budget}, prefix reuse {reuse}",
                )
    finally:
        backend.batch_tokens, backend.prefix_reuse = old, True
