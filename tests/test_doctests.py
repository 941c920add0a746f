"""The examples in docstrings and in docs/ run and print what they say."""

import doctest
import importlib
from pathlib import Path

import pytest

MODULES = [
    "rarecast",
    "rarecast.scores",
    "rarecast.forecasting.fit",
    "rarecast.evaluation.synthetic",
    "rarecast.forecasting.tail",
    "rarecast.forecasting.tail.lognormal",
]
DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.parametrize("name", MODULES)
def test_module_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_python_api_page():
    result = doctest.testfile(str(DOCS / "python-api.md"), module_relative=False)
    assert result.attempted > 0 and result.failed == 0
