"""``--related`` of ``rarecast forecast`` and ``rarecast report``: gpd-bayes's shape prior pooled from related
behaviors of the same model (see rarecast.forecasting.shape_pooling)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rarecast.errors import ForecastError, InputError
from rarecast.forecasting.shape_pooling import predictive_shape_prior, shape_log_likelihood
from rarecast.scores import Scores
from rarecast.store.score_files import read_scores

HELP = (
    "score table of a related behavior of the same model, or with a .db store a behavior in it (repeatable; "
    "exact scores): gpd-bayes's prior on the tail's shape is pooled from their tails instead of N(0, 0.2^2) "
    "(see docs/choices.md)"
)


def related_settings(
    related: list[str],
    source: str,
    data: Scores,
    *,
    method: str | None,
    behavior: str | None,
    model: str | None,
    k: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(estimator settings, provenance entries) for ``--related``; both empty when none is given.

    Each value is a score table or, when ``source`` is a .db store, a behavior in that store (a value that is
    not a file). The scores being forecast are refused: they would count twice, in the prior and in the fit.
    """
    if not related:
        return {}, {}
    if method not in (None, "gpd-bayes") or data.kind != "exact":
        raise InputError("--related pools gpd-bayes's shape prior, which needs exact scores and method gpd-bayes")
    likelihoods = []
    for value in related:
        in_store = Path(source).suffix.lower() == ".db" and not Path(value).is_file()
        if (value == behavior) if in_store else Path(value).resolve() == Path(source).resolve():
            raise InputError("--related names the scores being forecast; give other behaviors", file=value)
        scores, _ = read_scores(source, model=model, behavior=value) if in_store else read_scores(value)
        try:  # one table at a time, to name the one whose tail cannot be fitted
            likelihoods.append(shape_log_likelihood(scores, **k))
        except ForecastError as exc:
            raise InputError(f"--related: {exc}", file=f"{source}, behavior {value}" if in_store else value) from None
    return predictive_shape_prior(likelihoods).params(), {"shape_prior_from": related}
