"""rarecast: forecast rare language-model behaviors at deployment scale.

>>> import numpy as np, rarecast as rc
>>> logp = np.log(np.random.default_rng(0).beta(0.2, 50, size=1000))
>>> fit = rc.fit_tail(logp)
>>> 0.0 <= float(fit.worst_query_risk(1e6)) <= 1.0
True
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from rarecast.errors import ForecastError, InputError, RarecastError
from rarecast.scores import Scores

try:
    __version__ = version("rarecast")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

from rarecast.forecast import Fit, fit_tail  # noqa: E402  (needs the names above)
from rarecast.best_of_n import BestOfNFit, fit_best_of_n  # noqa: E402

__all__ = ["BestOfNFit", "Fit", "ForecastError", "InputError", "RarecastError", "Scores", "fit_best_of_n",
           "fit_tail", "__version__"]
