"""The fitted distribution of elicitation scores that every tail estimator produces.

A fit describes the distribution of psi = -log(-log p) over the query distribution as

* a *body*: weighted atoms below a threshold ``u`` (the evaluation scores themselves for exact data, or a
  grid of latent scores for sampled counts), carrying probability ``1 - tail_mass``;
* a *tail*: a generalized Pareto excess above ``u`` carrying probability ``tail_mass``, with scale ``sigma``
  and shape ``xi`` (``xi = 0`` is the exponential tail that the Gumbel-tail method assumes), or a weighted
  mixture of such excesses (a posterior predictive distribution).

Every field has a leading replicate axis ``R`` so that one object holds either the point fit (``R = 1``) or
many bootstrap or posterior draws for intervals, and every query is vectorized over it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from rarecast.scores import p_from_psi

# Gauss-Laguerre nodes integrate the tail's contribution to E[p] after the substitution s = tail_mass * e^-t.
_LAGUERRE_T, _LAGUERRE_W = np.polynomial.laguerre.laggauss(60)


def gpd_log_sf(excess: np.ndarray, sigma: np.ndarray, xi: np.ndarray) -> np.ndarray:
    """log P(E > excess) for a generalized Pareto excess; exact at xi = 0 and -inf past a bounded tail's end."""
    excess = np.maximum(excess, 0.0)
    t = xi * excess / sigma
    small = np.abs(xi) < 1e-12
    safe_xi = np.where(small, 1.0, xi)
    with np.errstate(divide="ignore", invalid="ignore"):
        general = np.where(t <= -1.0, -np.inf, -np.log1p(np.maximum(t, -1.0)) / safe_xi)
    return np.where(small, -excess / sigma, general)


def gpd_isf(log_q: np.ndarray, sigma: np.ndarray, xi: np.ndarray) -> np.ndarray:
    """The excess whose conditional survival is exp(log_q) (log_q <= 0)."""
    small = np.abs(xi) < 1e-12
    safe_xi = np.where(small, 1.0, xi)
    with np.errstate(over="ignore"):  # a heavy tail far out is +inf psi, i.e. p = 1
        general = sigma * np.expm1(-safe_xi * log_q) / safe_xi
    return np.where(small, -sigma * log_q, general)


@dataclass(frozen=True)
class TailModel:
    """Body atoms plus a generalized Pareto tail for psi; arrays carry a leading replicate axis ``R``.

    ``atoms`` (R, A) are sorted descending with ``weights`` (R, A) summing to ``1 - tail_mass``;
    ``threshold`` and ``tail_mass`` are (R,). ``sigma`` and ``xi`` are (R,) for one GPD tail per replicate, or
    (R, C) with ``mix`` (R, C) weights for a mixture of C GPD tails. When ``empirical`` (R, m), the sorted
    evaluation scores, is given, survival below the largest of them is their empirical fraction and the tail applies
    only beyond it: the paper's rule for behavior frequency.
    """

    atoms: np.ndarray
    weights: np.ndarray
    threshold: np.ndarray
    tail_mass: np.ndarray
    sigma: np.ndarray
    xi: np.ndarray
    empirical: np.ndarray | None = None
    mix: np.ndarray | None = None

    def __post_init__(self):
        # one tail per replicate is the common case; store it as a mixture of one component
        if np.ndim(self.sigma) == 1:
            object.__setattr__(self, "sigma", np.asarray(self.sigma, dtype=float)[:, None])
            object.__setattr__(self, "xi", np.asarray(self.xi, dtype=float)[:, None])
        if self.mix is None:
            object.__setattr__(self, "mix", np.ones_like(self.sigma))

    @property
    def replicates(self) -> int:
        return self.threshold.shape[0]

    def _col(self, a: np.ndarray) -> np.ndarray:
        return a.reshape(-1, 1)

    def isf(self, s: np.ndarray) -> np.ndarray:
        """Score psi whose survival probability is ``s``; shape (R, len(s))."""
        s = np.atleast_1d(np.asarray(s, dtype=float))[None, :]
        zeta = self._col(self.tail_mass)
        with np.errstate(divide="ignore"):
            log_q = np.log(np.minimum(s / zeta, 1.0))
        tail = self._col(self.threshold) + self._tail_isf(log_q)
        body = self._body_isf(s)
        return np.where(s < zeta, tail, body)

    def _tail_isf(self, log_q: np.ndarray) -> np.ndarray:
        """Excess with conditional survival exp(log_q), (R, Q); mixtures are inverted by bisection."""
        if self.sigma.shape[1] == 1:
            return gpd_isf(log_q, self.sigma, self.xi)
        comp = gpd_isf(log_q[:, :, None], self.sigma[:, None, :], self.xi[:, None, :])
        lo, hi = np.nanmin(comp, axis=2), np.nanmax(comp, axis=2)  # the mixture's quantile lies between
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            above = self._tail_log_sf(mid) > log_q
            lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
        return 0.5 * (lo + hi)

    def _tail_log_sf(self, excess: np.ndarray) -> np.ndarray:
        """Conditional log survival of the tail at excess (R, Q)."""
        comp = gpd_log_sf(excess[:, :, None], self.sigma[:, None, :], self.xi[:, None, :])
        assert self.mix is not None  # __post_init__ fills it
        with np.errstate(divide="ignore"):
            return logsumexp(comp, axis=2, b=self.mix[:, None, :])

    def _body_isf(self, s: np.ndarray) -> np.ndarray:
        out = np.empty((self.replicates, s.shape[1]))
        cum = np.cumsum(self.weights, axis=1) + self.tail_mass[:, None]
        for r in range(self.replicates):
            j = np.searchsorted(cum[r], s[0] - 1e-12, side="left")
            out[r] = self.atoms[r, np.minimum(j, self.atoms.shape[1] - 1)] if self.atoms.shape[1] else -np.inf
        return out

    def worst_psi(self, n: np.ndarray) -> np.ndarray:
        """Forecast of the largest psi among n queries: the top-1/n quantile."""
        return self.isf(1.0 / np.asarray(n, dtype=float))

    def log_sf(self, x: np.ndarray) -> np.ndarray:
        """log P(psi > x); shape (R, len(x))."""
        x = np.atleast_1d(np.asarray(x, dtype=float))[None, :]
        u = self._col(self.threshold)
        with np.errstate(divide="ignore"):
            out = np.log(self._col(self.tail_mass)) + self._tail_log_sf(
                np.broadcast_to(x - u, (self.replicates, x.shape[1]))
            )
        if self.empirical is not None:
            with np.errstate(divide="ignore"):
                inside = np.log(np.mean(self.empirical[:, :, None] > x[:, None, :], axis=1))
            return np.where(x >= self.empirical[:, :1], out, inside)
        below = x < u
        rows = np.flatnonzero(below.any(axis=1))  # forecasts far out rarely reach the body: skip it there
        if rows.size:
            with np.errstate(divide="ignore"):
                body = np.log(self._body_sf(x, rows))
            out[rows] = np.where(below[rows], body, out[rows])
        return out

    def _body_sf(self, x: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Tail mass plus the weight of the body atoms strictly above each x, for the given replicates."""
        above = self.atoms[rows, :, None] > x[0][None, None, :]
        return np.minimum(self.tail_mass[rows, None] + np.einsum("ra,rax->rx", self.weights[rows], above), 1.0)

    def mean_p(self) -> np.ndarray:
        """E[p] over the query distribution; shape (R,)."""
        body = np.sum(self.weights * p_from_psi(self.atoms), axis=1)
        log_q = -_LAGUERRE_T[None, None, :]
        tail_psi = self.threshold[:, None, None] + gpd_isf(log_q, self.sigma[:, :, None], self.xi[:, :, None])
        per_component = p_from_psi(tail_psi) @ _LAGUERRE_W
        assert self.mix is not None  # __post_init__ fills it
        return body + self.tail_mass * np.sum(self.mix * per_component, axis=1)

    def decays(self) -> np.ndarray:
        """Whether each replicate's tail falls off (positive, finite scales); shape (R,)."""
        return np.all(np.isfinite(self.sigma) & (self.sigma > 0), axis=1) & np.isfinite(self.threshold)

    def take(self, rows: np.ndarray) -> TailModel:
        """The replicates selected by a boolean mask or index array."""
        return TailModel(
            self.atoms[rows],
            self.weights[rows],
            self.threshold[rows],
            self.tail_mass[rows],
            self.sigma[rows],
            self.xi[rows],
            None if self.empirical is None else self.empirical[rows],
            None if self.mix is None else self.mix[rows],
        )
