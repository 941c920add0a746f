"""rarecast: forecast rare language-model behaviors at deployment scale.

>>> import numpy as np, rarecast as rc
>>> logp = np.log(np.random.default_rng(0).beta(0.2, 50, size=1000))
>>> fit = rc.fit_tail(logp)
>>> 0.0 <= float(fit.worst_query_risk(1e6)) <= 1.0
True
"""

from __future__ import annotations

from rarecast._moved import install_aliases
from rarecast.errors import ForecastError, InputError, RarecastError
from rarecast.forecasting.best_of_n import BestOfNFit, fit_best_of_n
from rarecast.forecasting.fit import Fit, fit_tail
from rarecast.forecasting.shape_pooling import ShapePrior, fit_tails, pooled_shape_prior
from rarecast.provenance import rarecast_version
from rarecast.scores import Scores

__version__ = rarecast_version()
install_aliases()

__all__ = [
    "BestOfNFit",
    "Fit",
    "ForecastError",
    "InputError",
    "RarecastError",
    "Scores",
    "ShapePrior",
    "fit_best_of_n",
    "fit_tail",
    "fit_tails",
    "pooled_shape_prior",
    "__version__",
]
