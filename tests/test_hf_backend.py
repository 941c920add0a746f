"""The hf backend on the real embedded model: batching, packing and the tokenization boundary."""

from __future__ import annotations

import numpy as np
import pytest
from logp_helpers import assert_logp_close, scored_tokens

from rarecast.backends.hf import continuation_ids, encode, pack_row, render_prompt, token_batches
from rarecast.queries import Query

pytestmark = pytest.mark.slow

QUERIES = [
    Query(id="short", prompt="Hi"),
    Query(id="medium", prompt="What is the capital of France? Answer in one word."),
    Query(
        id="chat",
        messages=(
            {"role": "system", "content": "You are a pirate."},
            {"role": "user", "content": "Tell me about the sea, the wind and the stars."},
        ),
    ),
    Query(id="long", prompt="Write a long story about a dragon who learns to read books in a library at night."),
]
# Multi-token targets sharing a first token (a branching trie), a single token, and a leading newline.
CONTINUATIONS = ["The secret is", "The capital", "Sure", "\n\nOnce"]


def test_batched_fp32_equals_one_at_a_time(smollm2_backend):
    batched = smollm2_backend.continuation_logprobs(QUERIES, CONTINUATIONS)
    alone = np.vstack([smollm2_backend.continuation_logprobs([q], CONTINUATIONS) for q in QUERIES])
    assert batched.shape == (len(QUERIES), len(CONTINUATIONS))
    # Equal up to fp32 rounding: batch shape and padding pick the GEMM kernel (see tests/logp_helpers.py).
    n_tokens = scored_tokens(smollm2_backend, QUERIES, CONTINUATIONS)
    assert_logp_close(batched, alone, n_tokens=n_tokens)
    # Several batches under a small token budget give the same numbers as one big batch.
    old = smollm2_backend.batch_tokens
    try:
        smollm2_backend.batch_tokens = 64
        small = smollm2_backend.continuation_logprobs(QUERIES, CONTINUATIONS)
    finally:
        smollm2_backend.batch_tokens = old
    assert_logp_close(small, batched, n_tokens=n_tokens)
    assert np.all(batched < 0) and np.all(np.isfinite(batched))


def test_shared_prompt_pass_matches_one_continuation_per_row(smollm2_backend):
    """The trie packing (all continuations in one row) against one plain row per continuation."""
    packed = smollm2_backend.continuation_logprobs(QUERIES, CONTINUATIONS)
    separate = np.column_stack([smollm2_backend.continuation_logprobs(QUERIES, [c])[:, 0] for c in CONTINUATIONS])
    n_tokens = np.array([[len(_cont_ids(smollm2_backend, q, c)) for c in CONTINUATIONS] for q in QUERIES])
    assert np.array_equal(n_tokens, scored_tokens(smollm2_backend, QUERIES, CONTINUATIONS))
    # Branches after the first sit behind other tokens in the row, so sums run in another order; the
    # difference is float rounding.
    assert_logp_close(packed, separate, n_tokens=n_tokens)


def _cont_ids(backend, query, cont):
    text = render_prompt(backend.tokenizer, query)
    return continuation_ids(backend.tokenizer, text, encode(backend.tokenizer, text), cont)


def test_tokenization_boundary_is_checked(smollm2_backend):
    tok = smollm2_backend.tokenizer
    text = render_prompt(tok, QUERIES[0])
    prompt_ids = encode(tok, text)
    # A clean boundary: the joined text's tokens start with the prompt's tokens.
    joined = encode(tok, text + "Sure")
    assert joined[: len(prompt_ids)] == prompt_ids
    assert continuation_ids(tok, text, prompt_ids, "Sure") == joined[len(prompt_ids) :]
    # The template ends in a newline, so a reply starting with newlines merges across the boundary when
    # the texts are joined; the prompt tokens must stay as they are and the reply keeps its own tokens.
    merged = encode(tok, text + "\n\nOnce")
    assert merged[: len(prompt_ids)] != prompt_ids
    ids = continuation_ids(tok, text, prompt_ids, "\n\nOnce")
    assert ids == encode(tok, "\n\nOnce") and tok.decode(ids) == "\n\nOnce"


def test_packing_shares_prefixes_and_skips_last_tokens():
    row = pack_row(0, [5, 6, 7], [[1, 2, 3], [1, 2, 4], [9]])
    # Nodes: prefix (1,) and (1, 2); the last tokens 3, 4 and 9 are scored but never fed in.
    assert row.input_ids == [5, 6, 7, 1, 2]
    assert row.position_ids == [0, 1, 2, 3, 4]
    assert [(pos, tok) for pos, tok, _, _ in row.targets] == [(2, 1), (3, 2), (4, 3), (2, 1), (3, 2), (4, 4), (2, 9)]
    single = pack_row(0, [5, 6, 7], [[1], [2], [3]])  # multiple choice: the prompt alone
    assert single.input_ids == [5, 6, 7] and not single.branching


def test_token_budget_batches():
    rows = [pack_row(i, list(range(n)), [[1]]) for i, n in enumerate([10, 3, 30, 5, 8])]
    batches = token_batches(rows, budget=32)
    assert sorted(r.query_index for b in batches for r in b) == [0, 1, 2, 3, 4]
    for b in batches:
        width = max(len(r.input_ids) for r in b)
        assert len(b) == 1 or len(b) * width <= 32
    assert [len(r.input_ids) for b in batches for r in b] == sorted([10, 3, 30, 5, 8])


def test_token_batches_cut_where_padding_costs_more_than_a_pass():
    rows = [pack_row(i, list(range(n)), [[1]]) for i, n in enumerate([8, 2, 8, 2, 8, 2, 8, 2])]
    # All eight fit one batch of 8 x 8 = 64 tokens, but 24 of them would be padding; a second pass costs
    # 64 / 32 = 2 tokens' worth.
    batches = token_batches(rows, budget=64)
    assert [[len(r.input_ids) for r in b] for b in batches] == [[2, 2, 2, 2], [8, 8, 8, 8]]
    capped = token_batches(rows, budget=64, max_rows=3)
    assert sum(len(b) for b in capped) == 8 and all(len(b) <= 3 for b in capped)
    assert all(len({len(r.input_ids) for r in b}) == 1 for b in capped)


def test_bf16_body_stays_close_to_fp32(smollm2_backend):
    from rarecast.backends import get_backend

    bf16 = get_backend("hf:smollm2", dtype="bf16", device="cpu")
    assert bf16.describe()["dtype"] == "bf16" and bf16.revision == smollm2_backend.revision
    exact = smollm2_backend.continuation_logprobs(QUERIES[:2], ["Sure", "The capital"])
    approx = bf16.continuation_logprobs(QUERIES[:2], ["Sure", "The capital"])
    # bf16 has 8 mantissa bits; the fp32 head and log-softmax keep the error to a few tenths of a nat here.
    assert np.max(np.abs(approx - exact)) < 0.5
    assert not np.array_equal(approx, exact)
