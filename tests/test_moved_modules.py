"""The 0.1 module paths keep importing for one release, with a DeprecationWarning, as the very same modules."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from rarecast._moved import MOVED, new_name


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_warns_and_gives_the_module_at_its_new_path(old: str) -> None:
    # A fresh interpreter: in this one the old name may already be cached from an earlier test.
    code = (
        "import importlib, warnings\n"
        "warnings.simplefilter('error', DeprecationWarning)\n"
        "import rarecast\n"
        f"try:\n    importlib.import_module({old!r})\nexcept DeprecationWarning as w:\n    print(w)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{old} moved to {MOVED[old]}; the old name will be removed in rarecast 0.3"


def test_old_and_new_names_are_one_object_and_submodules_follow() -> None:
    with pytest.warns(DeprecationWarning, match="rarecast.tail moved"):
        from rarecast.tail import register  # the plug-in hook documented in 0.1
    from rarecast.forecasting.tail import register as new_register

    assert register is new_register
    with pytest.warns(DeprecationWarning, match="rarecast.tail.gpd_bayes moved"):
        old = importlib.import_module("rarecast.tail.gpd_bayes")
    assert old is importlib.import_module("rarecast.forecasting.tail.gpd_bayes")
    assert new_name("rarecast.tail.base") == "rarecast.forecasting.tail.base"
    assert new_name("rarecast.forecasting") is None and new_name("rarecast.tailgate") is None
