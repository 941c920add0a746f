"""One tolerance for log-probs that the model computed twice in different ways (issue 14).

Batching, padding, prefix reuse, resuming a run, another engine: each changes only how the same fp32
arithmetic is laid out, and so which GEMM kernel runs and in what order its sums are rounded. Batch shape and
padding pick the kernel, and the choice differs between CPUs. On the AMD EPYC development machines the tests
saw bit-identical numbers; on an Intel Xeon (AVX-512, AMX) the same comparisons differ by up to 4.7e-5 nats.
Equality is therefore not what fp32 promises, and
these tests check the property users need instead: such changes move no result beyond float rounding.

Why the tolerance has this form. A token's log p is ``logit_t - logsumexp(logits)``. Rounding differences
perturb the hidden state by a small relative amount; that moves log p by ``(w_t - E_p[w]) . dh``, which is
about zero for a near-certain token and grows with how unlikely the token is. So the error is relative to
the token's ``|log p|``, and since every term of a sum of token log-probs is <= 0, per-token relative errors
add up to a relative error of the sum: ``RTOL * |log p|``. Near log p = 0 that bound vanishes while the last
step still subtracts two fp32 numbers of magnitude 10-30 (logit and log-sum-exp), one ulp of which is
1.9e-6: hence a floor of ``ATOL_PER_TOKEN`` (two such ulps) per scored token. A behavior's log p over k
targets is a log-sum-exp of their sums; its error is at most the weighted mean of theirs, which is below
``RTOL * (|log p| + log k)``: hence the ``n_targets`` term.

The constants. fp32's unit roundoff is 6e-8, but a forward bound through 30 layers of 576- to 1536-long dot
products is far too loose to use, so the size is measured: on an Intel Xeon (AVX-512, AMX), against one query
alone, over token budgets 8 to 2048, prefix reuse on and off, a trie-packed row against one row per
continuation, and the model's own greedy (likely) continuations of 3 and 10 tokens, the largest differences
were 6.8e-6 relative (3.5e-5 nats on log p = -5.1, three tokens) and, on likely tokens, 1.9e-6 nats per
token (7.7e-6 on log p = -0.73, four tokens); a resumed `rarecast score` differed by 3.4e-6 relative
(1.7e-5 on -4.94). ``RTOL = 2e-5`` and ``ATOL_PER_TOKEN = 4e-6`` leave about 3x headroom over all of them.

Tight enough to catch bugs. A wrong target position, a dropped token or a wrong mask moves log p by 1e-2
nats or more (``test_logp_tolerance.py``, on the real model: reading each token's distribution one position
early moved every log p by at least 10 nats, dropping a continuation's last token by at least 0.38). The
tolerance for log p = -50 over 10 tokens is 1.0e-3 + 4e-5 nats; a tolerance of 1e-2 or more is refused,
since it could hide such a bug.

Where bit-identity *is* promised (a resumed run reads back the floats already in the store) the tests
compare with ``==``, without recomputing anything.
"""

from __future__ import annotations

import numpy as np

RTOL = 2e-5  # relative to |log p|: rounding differences move each token's log p in proportion to it
ATOL_PER_TOKEN = 4e-6  # two fp32 ulps at the logits' magnitude (16-32): the floor for near-certain tokens
BUG_SIZE = 1e-2  # the smallest change a wrong position, dropped token or wrong mask makes (nats)


def logp_tolerance(expected, n_tokens, n_targets: int = 1) -> np.ndarray:
    """Largest |difference| that fp32 rounding explains for log p ``expected`` summed over ``n_tokens`` scored
    tokens (for a behavior with several targets: the longest target's, with ``n_targets`` targets)."""
    expected = np.abs(np.asarray(expected, dtype=float))
    return RTOL * (expected + np.log(n_targets)) + ATOL_PER_TOKEN * np.asarray(n_tokens, dtype=float)


def assert_logp_close(actual, expected, *, n_tokens, n_targets: int = 1, what: str = "log p") -> None:
    """Assert that two computations of the same log-probs agree to fp32 rounding (see the module docstring).

    ``n_tokens`` is the number of scored tokens of each value (a scalar or an array broadcast against
    ``expected``). Infinite values must be equal; NaN never passes.
    """
    actual, expected = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    assert actual.shape == expected.shape, f"{what}: shapes differ: {actual.shape} vs {expected.shape}"
    finite = np.isfinite(expected)
    tol = np.broadcast_to(logp_tolerance(np.where(finite, expected, 0.0), n_tokens, n_targets), expected.shape)
    assert np.all(tol < BUG_SIZE), f"{what}: a tolerance of {tol.max():.2e} nats could hide a real bug"
    with np.errstate(invalid="ignore"):  # inf - inf: decided by the equality below
        diff = np.abs(actual - expected)
    ok = np.where(finite, diff <= tol, actual == expected)
    if not ok.all():
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(ok, 0.0, np.where(finite, diff / tol, np.inf))
        ratio[np.isnan(ratio)] = np.inf
        worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(ratio)), expected.shape))
        targets = f" + log {n_targets}" if n_targets != 1 else ""
        raise AssertionError(
            f"{what}: {int((~ok).sum())} of {expected.size} values differ by more than fp32 rounding explains; "
            f"worst at {worst}: {float(actual[worst])!r} vs {float(expected[worst])!r}, |difference| "
            f"{float(diff[worst]):.3e} > tolerance {float(tol[worst]):.3e} (= {RTOL:g} x (|log p|{targets}) + "
            f"{ATOL_PER_TOKEN:g} x {np.broadcast_to(n_tokens, expected.shape)[worst]} tokens)"
        )


def scored_tokens(backend, queries, continuations) -> np.ndarray:
    """How many tokens the hf ``backend`` scores for each (query, continuation): shape (n_q, n_c)."""
    rows = [backend._pack(i, q, continuations) for i, q in enumerate(queries)]
    return np.array([[sum(t[3] == j for t in row.targets) for j in range(len(continuations))] for row in rows])
