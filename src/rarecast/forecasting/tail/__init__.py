"""Tail estimators, one module each, behind one registry.

>>> from rarecast.forecasting.tail import make_estimator, methods
>>> "gumbel-ols" in methods()
True
>>> make_estimator("gumbel-ols", k=20).params()
{'k': 20, 'positions': 'j/m'}
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from rarecast.errors import ForecastError
from rarecast.forecasting.tail.base import PsiDistribution, TailEstimator
from rarecast.forecasting.tail.binomial import BinomialPOT
from rarecast.forecasting.tail.exponential import ExponentialPOT
from rarecast.forecasting.tail.gpd import GeneralizedParetoPOT
from rarecast.forecasting.tail.gpd_bayes import BayesianGPD
from rarecast.forecasting.tail.gumbel_ols import GumbelOLS
from rarecast.forecasting.tail.lognormal import LogNormal, LogNormalQuantile
from rarecast.forecasting.tail.model import TailModel

_REGISTRY: dict[str, Callable[..., TailEstimator]] = {}

#: The default for exact log-probabilities, chosen by benchmarks/forecast_accuracy.py (docs/choices.md).
DEFAULT_EXACT = "gpd-bayes"
#: The default for sampled counts.
DEFAULT_COUNTS = "binomial"


def register(name: str, factory: Callable[..., TailEstimator]) -> None:
    """Make an estimator available to ``fit_tail(method=name)`` and the CLI's ``--method``."""
    _REGISTRY[name] = factory


def methods() -> list[str]:
    """Names of all registered estimators."""
    return sorted(_REGISTRY)


def make_estimator(method: str, **params) -> TailEstimator:
    """Build a registered estimator; unknown names and bad parameters raise ForecastError."""
    if method not in _REGISTRY:
        raise ForecastError(f"unknown method {method!r}; choose one of: {', '.join(methods())}")
    try:
        return _REGISTRY[method](**params)
    except TypeError as exc:
        raise ForecastError(f"bad parameters for method {method!r}: {exc}") from None


register("gumbel-ols", GumbelOLS)
register("gumbel-ols-digamma", partial(GumbelOLS, positions="digamma"))
register("lognormal", LogNormal)
register("lognormal-quantile", LogNormalQuantile)
register("exponential", ExponentialPOT)
register("exponential-predictive", partial(ExponentialPOT, predictive=True))
register("gpd", GeneralizedParetoPOT)
register("gpd-bayes", BayesianGPD)
register("binomial", BinomialPOT)

__all__ = [
    "DEFAULT_COUNTS",
    "DEFAULT_EXACT",
    "PsiDistribution",
    "TailEstimator",
    "TailModel",
    "make_estimator",
    "methods",
    "register",
]
