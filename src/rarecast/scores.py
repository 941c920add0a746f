"""Per-query elicitation probabilities, as exact log-probabilities or as sampled counts.

The elicitation score is psi = -log(-log p). It is computed from log p, never from p, so that p = 1e-30 and
p = 1 - 1e-9 both keep their precision.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from rarecast.errors import ForecastError


def psi_from_logp(logp: np.ndarray) -> np.ndarray:
    """Elicitation score psi = -log(-log p) from natural-log probabilities.

    log p = 0 (p = 1) maps to +inf and log p = -inf (p = 0) to -inf.

    >>> float(psi_from_logp(np.array([np.log(0.5)]))[0])  # doctest: +ELLIPSIS
    0.366...
    """
    logp = np.asarray(logp, dtype=float)
    with np.errstate(divide="ignore"):
        psi: np.ndarray = -np.log(-logp)
        return psi


def logp_from_psi(psi: np.ndarray) -> np.ndarray:
    """Inverse of :func:`psi_from_logp`: log p = -exp(-psi)."""
    logp: np.ndarray = -np.exp(-np.asarray(psi, dtype=float))
    return logp


def p_from_psi(psi: np.ndarray) -> np.ndarray:
    """Probability p = exp(-exp(-psi))."""
    p: np.ndarray = np.exp(logp_from_psi(psi))
    return p


def _reject(mask: np.ndarray, describe: Callable[[int], str]) -> None:
    """Raise ForecastError for the first flagged score; ``describe(i)`` says what is wrong with it."""
    if mask.any():
        i = int(np.flatnonzero(mask)[0])
        raise ForecastError(describe(i), index=i)


@dataclass(frozen=True)
class Scores:
    """Elicitation probabilities of m evaluation queries.

    Exactly one form is held:

    * ``logp``: natural-log probabilities (``<= 0``; ``-inf`` for a probability of exactly 0), from exact
      methods (teacher forcing, multiple-choice token probabilities);
    * ``successes`` and ``trials``: counts from repeated sampling with a grader. They are kept as counts, so
      a query with 0 successes is never turned into a made-up tiny probability.

    Build them with :meth:`from_logp`, :meth:`from_p` or :meth:`from_counts`, which validate once.

    >>> s = Scores.from_p([0.1, 0.01, 0.001])
    >>> s.m, s.kind
    (3, 'exact')
    """

    logp: np.ndarray | None = None
    successes: np.ndarray | None = None
    trials: np.ndarray | None = None
    ids: tuple[str, ...] | None = field(default=None, compare=False)

    @property
    def kind(self) -> str:
        """``"exact"`` for log-probabilities, ``"counts"`` for sampled successes and trials."""
        return "exact" if self.logp is not None else "counts"

    @property
    def m(self) -> int:
        """Number of evaluation queries."""
        if self.logp is not None:
            return len(self.logp)
        assert self.successes is not None  # from_counts sets successes and trials together
        return len(self.successes)

    @property
    def psi(self) -> np.ndarray:
        """Elicitation scores psi = -log(-log p) (exact scores only)."""
        if self.logp is None:
            raise ForecastError("psi is defined for exact log-probabilities; these scores are sampled counts")
        return psi_from_logp(self.logp)

    @classmethod
    def from_logp(cls, logp: ArrayLike, ids: Iterable[object] | None = None) -> Scores:
        """Validate natural-log probabilities: finite or -inf, and <= 0."""
        arr = np.asarray(logp, dtype=float).ravel()
        _reject(np.isnan(arr), lambda i: "log p is NaN; every query needs a number <= 0")
        _reject(arr > 0, lambda i: f"log p is {arr[i]:g} > 0; give natural-log probabilities (<= 0), not p or -log p")
        return cls(logp=arr, ids=_ids(ids, len(arr)))

    @classmethod
    def from_p(cls, p: ArrayLike, ids: Iterable[object] | None = None) -> Scores:
        """Validate probabilities in [0, 1] and store their logs."""
        arr = np.asarray(p, dtype=float).ravel()
        _reject(np.isnan(arr) | (arr < 0) | (arr > 1), lambda i: f"p is {arr[i]}; probabilities must lie in [0, 1]")
        with np.errstate(divide="ignore"):
            return cls(logp=np.log(arr), ids=_ids(ids, len(arr)))

    @classmethod
    def from_counts(cls, successes: ArrayLike, trials: ArrayLike, ids: Iterable[object] | None = None) -> Scores:
        """Validate sampled counts: whole numbers with 0 <= successes <= trials and trials >= 1."""
        s = np.asarray(successes, dtype=float).ravel()
        k = np.asarray(trials, dtype=float).ravel()
        if s.shape != k.shape:
            raise ForecastError(f"{len(s)} success counts but {len(k)} trial counts; give one of each per query")
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(s) | ~np.isfinite(k) | (s != np.round(s)) | (k != np.round(k))
            bad |= (s < 0) | (k < 1) | (s > k)
        _reject(
            bad,
            lambda i: (
                f"successes={s[i]:g}, trials={k[i]:g}; need whole numbers with 0 <= successes <= trials and trials >= 1"
            ),
        )
        return cls(successes=s.astype(np.int64), trials=k.astype(np.int64), ids=_ids(ids, len(s)))


def _ids(ids: Iterable[object] | None, m: int) -> tuple[str, ...] | None:
    if ids is None:
        return None
    out = tuple(str(x) for x in ids)
    if len(out) != m:
        raise ForecastError(f"{len(out)} ids for {m} scores")
    return out
