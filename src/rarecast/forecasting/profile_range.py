"""What sampled counts alone say about a mean over the distribution of p: its profile-likelihood range.

A best-of-N forecast needs the distribution of per-query p below p ~ 1/k, where k attempts see almost nothing,
so its point and interval rest on an assumed shape there. :func:`profile_range` drops the assumption. Over
*every* distribution of p on a logit grid (any shape) it finds the smallest and largest mean E[v(p)] (best-of-N:
v(p) = 1 - (1 - p)^N) among the distributions whose binomial log-likelihood is within chi2_1(level) / 2 of the
largest any distribution reaches. That is the profile-likelihood confidence interval for the mean with no shape
assumed.

Both steps are convex problems over the simplex of grid masses w, with g(w) = sum_d share_d log(L_d . w) the
per-query log-likelihood (concave):

* **the largest log-likelihood** (the nonparametric MLE) by :data:`EM_START` EM steps, then Kelley's cutting
  planes: a linear program over w and an epigraph variable, cut by the tangent planes of g, each new point
  found by an exact line search towards the program's solution. The tangent plane at w also bounds max g from
  above by g(w) + max_j dg/dw_j - 1, so the run stops with the maximum bracketed to within :data:`MLE_TOL`;
* **each end** by Veinott's supporting-hyperplane method: a linear program maximizes (or minimizes) v . w under
  tangent planes of g taken where the segment to the program's last solution leaves the feasible set; the
  segment starts near the best feasible point so far (:data:`ANCHOR` of the way to the MLE).
  The program's value bounds the end from outside and that boundary point from inside, so the run stops
  with the end bracketed to within :data:`END_TOL`; the outer bound is returned, and the MLE's lower bound sets
  the likelihood floor, so the range errs on the wide side.

A generic conic solver (CVXPY with Clarabel), tried first, returned on one benchmark repetition an end whose
masses broke the sum-to-one constraint by 4e-4 and, renormalized, stood 3e-3 beyond the feasible set; the
brackets here certify their own accuracy.

>>> import numpy as np
>>> from rarecast.forecasting.profile_range import profile_range
>>> p = np.array([0.1, 0.5, 0.9])                          # a three-point grid
>>> lik = np.array([1 - p, p])                              # one attempt per query: 0 or 1 success
>>> low, high, slack = profile_range(lik, np.array([60, 40]), p[None, :], 0.9)   # the mean of p
>>> bool(low[0] < 0.4 < high[0])
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from scipy import stats
from scipy.optimize import linprog

from rarecast.errors import ForecastError

#: How close the bracket of the largest log-likelihood (per query) and of each end must be before they stop.
MLE_TOL = 1e-8
END_TOL = 1e-4
#: Most cutting planes per problem; a run that reaches it returns its outer bound, which is still valid (the
#: MLE's cuts close within about 60, the ends' within 20 to 60 except near ASR@N = 1, where they close slowly).
MAX_CUTS = 60
#: How far towards the MLE the segments of the ends' method start from the best feasible point found.
ANCHOR = 0.1
#: EM steps before the MLE's cutting planes.
EM_START = 50


def _loglik(lik: np.ndarray, share: np.ndarray, w: np.ndarray) -> tuple[float, np.ndarray]:
    """g(w) = share . log(L w) and its gradient; -inf (and a gradient with nan) where a count has zero
    likelihood, which the line searches and bisections read as outside."""
    f = lik @ w
    with np.errstate(divide="ignore", invalid="ignore"):  # f = 0: g = -inf, its gradient nan (a rejected point)
        return float(share @ np.log(f)), (share / f) @ lik


def _linprog(cost: np.ndarray, cuts: list[np.ndarray], rhs: list[float], n_free: int = 0) -> np.ndarray:
    """argmin cost . x over x = (w, z): w on the simplex, ``n_free`` unbounded z, cuts . x <= rhs."""
    G = len(cost) - n_free
    result = linprog(
        cost,
        A_ub=np.array(cuts) if cuts else None,
        b_ub=np.array(rhs) if rhs else None,
        A_eq=np.append(np.ones(G), np.zeros(n_free))[None, :],
        b_eq=[1.0],
        bounds=[(0, None)] * G + [(None, None)] * n_free,
        method="highs",
    )
    if result.x is None:
        raise ForecastError(f"the profile-likelihood range's linear program failed: {result.message}")
    x: np.ndarray = result.x
    return x


def max_loglik(lik: np.ndarray, share: np.ndarray) -> tuple[np.ndarray, float]:
    """Masses that maximize g (the nonparametric MLE) and a lower bound on max g within MLE_TOL of it."""
    G = lik.shape[1]
    w = np.full(G, 1.0 / G)
    for _ in range(EM_START):  # EM's steps lift the masses the counts favour cheaply; the cuts then finish
        w = w * ((share / (lik @ w)) @ lik)
    cuts: list[np.ndarray] = []
    rhs: list[float] = []
    cost = np.append(np.zeros(G), -1.0)  # maximize the epigraph variable
    upper = np.inf
    for _ in range(MAX_CUTS):
        g, dg = _loglik(lik, share, w)
        upper = min(upper, g + dg.max() - 1.0)  # the tangent plane at w bounds max g (dg . w = 1)
        if upper - g < MLE_TOL:
            break
        cuts.append(np.append(-dg, 1.0))  # z <= g(w) + dg . (v - w)
        rhs.append(g - dg @ w)
        solution = _linprog(cost, cuts, rhs, n_free=1)
        upper = min(upper, solution[-1])  # so does the program's value
        v = solution[:G]
        w = w + _line_search(lik, share, w, v - w) * (v - w)
    return w, _loglik(lik, share, w)[0]


def _bisect(holds: Callable[[float], bool]) -> float:
    """The largest s in [0, 1] where ``holds`` (true from 0 up to some point, false after it), to 2^-60."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if holds(mid):
            lo = mid
        else:
            hi = mid
    return lo


def _line_search(lik: np.ndarray, share: np.ndarray, w: np.ndarray, d: np.ndarray) -> float:
    """The step s in [0, 1] that maximizes g(w + s d): where the slope, which falls along the line, turns."""
    return _bisect(lambda s: bool(_loglik(lik, share, w + s * d)[1] @ d > 0))


def _boundary(lik: np.ndarray, share: np.ndarray, floor: float, inside: np.ndarray, outside: np.ndarray) -> np.ndarray:
    """The point where the segment from ``inside`` (g above floor) to ``outside`` crosses g = floor."""
    s = _bisect(lambda s: _loglik(lik, share, (1 - s) * inside + s * outside)[0] >= floor)
    return (1 - s) * inside + s * outside


def _end(
    values: np.ndarray, sign: float, lik: np.ndarray, share: np.ndarray, floor: float, mle: np.ndarray
) -> tuple[float, float]:
    """The largest (sign 1) or smallest (sign -1) values . w with g(w) >= floor: a bound from outside (the
    linear program's value) and how far inside it the best feasible point found lies."""
    cuts: list[np.ndarray] = []
    rhs: list[float] = []
    best, inner = mle, sign * (values @ mle)
    for _ in range(MAX_CUTS):
        v = _linprog(-sign * values, cuts, rhs)
        outer = sign * (values @ v)
        if _loglik(lik, share, v)[0] >= floor:
            inner = outer  # the program's point is feasible: it is the end
            break
        # the segment to v starts near the best feasible point so far, a little towards the MLE so that it
        # starts strictly inside: from the MLE itself the crossings stay far from the end
        w = _boundary(lik, share, floor, (1 - ANCHOR) * best + ANCHOR * mle, v)
        if sign * (values @ w) > inner:
            best, inner = w, sign * (values @ w)
        if outer - inner < END_TOL:
            break
        g, dg = _loglik(lik, share, w)
        scale = np.abs(dg).max()  # rows of comparable size keep HiGHS's tolerances meaningful
        cuts.append(-dg / scale)  # g(w) + dg . (x - w) >= floor
        rhs.append((g - dg @ w - floor) / scale)
    return sign * outer, outer - inner


class ProfileRange(NamedTuple):
    """Ends of the profile-likelihood range, one per mean; ``slack`` bounds how far each end may lie outside
    the exact one (0 where the end was found exactly)."""

    low: np.ndarray
    high: np.ndarray
    slack: np.ndarray


def profile_range(lik: np.ndarray, count: np.ndarray, values: np.ndarray, level: float) -> ProfileRange:
    """The profile-likelihood ``level`` range of E[v(p)] for each row of ``values``, with no shape assumed.

    Parameters
    ----------
    lik : (D, G) array
        Likelihood of each distinct count (successes, trials) at each grid point of p, each row scaled by any
        positive factor (its largest entry, to keep it in range).
    count : (D,) array
        How many queries show each distinct count.
    values : (A, G) array
        v(p) at the grid points, one row per mean wanted (best-of-N: 1 - (1 - p)^N).
    level : float
        Confidence level, strictly between 0 and 1: the range keeps the distributions whose log-likelihood is
        within chi2_1(level) / 2 of the largest.

    Returns
    -------
    ProfileRange
        ``low`` and ``high`` (A,) never lie inside the exact ends; ``slack`` (A,), the larger of the two ends'
        brackets, bounds how far outside they may lie: END_TOL or less unless MAX_CUTS cuts did not close a
        bracket (seen where an end is within about 0.01 of 1).
    """
    if not (lik > 0).any(axis=1).all():
        raise ForecastError("a count has zero likelihood at every grid point; the grid cannot hold it")
    share = count / count.sum()
    mle, top = max_loglik(lik, share)
    floor = top - stats.chi2.ppf(level, 1) / 2 / count.sum()
    low, low_slack = np.array([_end(v, -1.0, lik, share, floor, mle) for v in values]).T
    high, high_slack = np.array([_end(v, 1.0, lik, share, floor, mle) for v in values]).T
    return ProfileRange(low, high, np.maximum(low_slack, high_slack))
