"""What every tail estimator shares: validation of its data, the fit on sorted scores, and bootstrap draws."""

from __future__ import annotations

import inspect
from typing import ClassVar, Protocol

import numpy as np

from rarecast.errors import ForecastError
from rarecast.forecasting.tail.model import TailModel
from rarecast.scores import Scores


class PsiDistribution(Protocol):
    """A fitted distribution of psi with a leading replicate axis; :class:`TailModel` is the main one."""

    @property
    def replicates(self) -> int: ...

    def isf(self, s: np.ndarray) -> np.ndarray: ...

    def worst_psi(self, n: np.ndarray) -> np.ndarray: ...

    def log_sf(self, x: np.ndarray) -> np.ndarray: ...

    def mean_p(self) -> np.ndarray: ...

    def decays(self) -> np.ndarray: ...

    def take(self, rows: np.ndarray) -> PsiDistribution: ...


class TailEstimator:
    """Base class of estimators that fit exact log-probabilities.

    Subclasses set ``name``, validate their parameters in ``__init__`` (once, at the edge) and implement
    :meth:`fit_sorted`, which fits every row of a (R, m) array of psi sorted in descending order at once. The
    point fit and the bootstrap replicates for intervals then share one code path.
    """

    name: ClassVar[str]
    data_kind: ClassVar[str] = "exact"
    #: whether the fit extrapolates the top scores, so that an all-tied top leaves it nothing to fit
    fits_top: ClassVar[bool] = True
    #: printed beside this estimator's intervals when benchmarks/forecast_accuracy.py has not shown them to
    #: cover 85% to 95% of what deployments realize; None once it has (an instance may replace it when its
    #: settings put it outside what the benchmark measured)
    interval_note: str | None = (
        "its 90% intervals are not shown to cover 85% to 95% of realized outcomes in rarecast's accuracy "
        "benchmark (docs/forecast-accuracy.md); treat them as rough"
    )

    def fit_sorted(self, psi_desc: np.ndarray) -> PsiDistribution:
        raise NotImplementedError

    def params(self) -> dict:
        """Every constructor argument by name, as set (scikit-learn's ``get_params``): provenance records it
        and refits (diagnostics, backtests) rebuild the estimator from it, so nothing the user chose is lost."""
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        params = inspect.signature(type(self).__init__).parameters.values()
        return {p.name: getattr(self, p.name) for p in params if p.kind in named and p.name != "self"}

    def points_needed(self, m: int) -> int:
        """How many of the m largest scores must be finite (0 < p < 1) and not all tied."""
        return 2

    def point_rule(self, risk: str) -> str | None:
        """How the point forecast of ``risk`` is made: None, from the point fit (a plug-in forecast); or
        ``"predictive"``, from its distribution over :meth:`draws` (see :meth:`rarecast.Fit.forecast`), so that all
        three risks come from one set of draws."""
        return None

    def check(self, scores: Scores) -> np.ndarray:
        """Return psi sorted descending, or raise ForecastError saying why these scores cannot be fitted."""
        if scores.kind != self.data_kind:
            hint = "use method='binomial' for sampled counts" if scores.kind == "counts" else "pick an exact method"
            raise ForecastError(f"method {self.name!r} fits {self.data_kind} scores but got {scores.kind}; {hint}")
        psi = np.sort(scores.psi)[::-1]
        need = self.points_needed(len(psi))
        top = psi[:need]
        certain = int(np.sum(psi == np.inf))
        if certain and len(psi) >= need and not np.isfinite(top).all():
            raise ForecastError(
                f"method {self.name!r} fits the {need} largest scores, but {certain} of the {len(psi)} queries "
                "have p = 1 (the behavior is certain for them), so there is no tail to extrapolate: the risk "
                "is already certain at any deployment size; check those queries"
            )
        if len(psi) < need or not np.isfinite(top).all():
            n_ok = int(np.isfinite(psi).sum())
            raise ForecastError(
                f"method {self.name!r} needs at least {need} queries with 0 < p < 1, got {n_ok} of "
                f"{len(psi)}; score more queries or lower k"
            )
        if self.fits_top and top[0] == top[-1]:
            raise ForecastError(
                f"the top {need} scores are all equal, so the tail does not decay: a floor or rounded scores? "
                "check how they were computed"
            )
        return psi

    def fit_point(self, scores: Scores) -> PsiDistribution:
        return self.fit_sorted(self.check(scores)[None, :])

    def draws(self, scores: Scores, n_draws: int, rng: np.random.Generator) -> PsiDistribution:
        """Replicates for intervals: fits on bootstrap resamples of the evaluation queries."""
        psi = self.check(scores)
        idx = rng.integers(0, len(psi), size=(n_draws, len(psi)))
        boot = -np.sort(-psi[idx], axis=1)
        return self.fit_sorted(boot)


class PeaksOverThreshold(TailEstimator):
    """Base of estimators that model the k largest scores as excesses over the (k+1)-th.

    ``k`` is "auto" (about sqrt(m), at least 10), a whole number, or a fraction of m.
    """

    def __init__(self, k: int | float | str = "auto"):
        self.k = check_k(k)

    def points_needed(self, m: int) -> int:
        return resolve_k(self.k, m) + 1

    def split(self, psi_desc: np.ndarray):
        """(k, threshold u per row, excesses (R, k), body atoms, body weights) of sorted rows."""
        k = resolve_k(self.k, psi_desc.shape[1])
        u = psi_desc[:, k]
        atoms, weights = uniform_body(psi_desc, k)
        return k, u, psi_desc[:, :k] - u[:, None], atoms, weights

    @staticmethod
    def posterior_replicates(psi_desc: np.ndarray, k: int, sigma: np.ndarray, xi: np.ndarray, rng: np.random.Generator):
        """Replicates of one fit for given draws of the tail's (sigma, xi).

        The tail's mass above the (k+1)-th of m scores gets its Jeffreys posterior Beta(k + 1/2, m - k + 1/2);
        the body's weights shrink or grow to match.
        """
        r, m = len(sigma), psi_desc.shape[1]
        zeta = rng.beta(k + 0.5, m - k + 0.5, size=r)
        atoms, weights = uniform_body(psi_desc, k)
        weights = np.repeat(weights, r, axis=0) * ((1 - zeta) / (1 - k / m))[:, None]
        return TailModel(np.repeat(atoms, r, axis=0), weights, np.full(r, psi_desc[0, k]), zeta, sigma, xi)


def default_k(m: int) -> int:
    """Tail size used when k is "auto": about sqrt(m) and at least 10.

    sqrt(m) is the classical compromise between the variance of a small tail sample and the bias of reaching
    into the body; docs/choices.md shows its benchmark against fixed fractions.
    """
    return int(max(10, round(np.sqrt(m))))


def resolve_k(k, m: int) -> int:
    """The tail size for m scores: "auto", a whole number, or a fraction of m (at least 10)."""
    if k == "auto":
        kk = default_k(m)
    elif isinstance(k, float):
        kk = max(10, int(round(k * m)))
    else:
        kk = k
    if kk >= m:
        raise ForecastError(f"k = {kk} needs more than {kk} scored queries, got {m}; score more queries or lower k")
    return kk


def check_k(k) -> int | float | str:
    """Validate a tail size: "auto", a whole number >= 2, or a fraction of m in (0, 1)."""
    if isinstance(k, float) and not isinstance(k, bool):
        if not 0 < k < 1:
            raise ForecastError(f"a fractional k must lie in (0, 1), got {k!r}")
        return k
    return k if k == "auto" else require_int("k", k, 2)


def require_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ForecastError(f"{name} must be a whole number >= {low}, got {value!r}")
    return int(value)


def require_positive(name: str, value, zero_ok: bool = False) -> float:
    number = not isinstance(value, bool) and isinstance(value, (int, float, np.number))
    if not number or not (value >= 0 if zero_ok else value > 0):
        raise ForecastError(f"{name} must be a {'non-negative' if zero_ok else 'positive'} number, got {value!r}")
    return float(value)


def uniform_body(psi_desc: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Atoms and weights for the evaluation scores below the k largest, each weighing 1/m."""
    m = psi_desc.shape[1]
    atoms = psi_desc[:, k:]
    return atoms, np.full(atoms.shape, 1.0 / m)
