"""Placeholder while the forecasting core is written (issue 2)."""


class Fit:  # replaced by the real fitted-forecast object
    pass


def fit_tail(*args, **kwargs):
    raise NotImplementedError("forecasting core in progress")
