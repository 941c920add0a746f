"""Module paths of rarecast 0.1 that moved in 0.2: they keep working for one release, with a DeprecationWarning.

``import rarecast.backtest`` (or ``from rarecast.tail import register``) returns the module at its new path,
so old code keeps the very same objects; only the import statement needs updating.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType

MOVED = {
    "rarecast.adaptive": "rarecast.elicitation.adaptive",
    "rarecast.allocate": "rarecast.evaluation.allocate",
    "rarecast.backtest": "rarecast.evaluation.backtest",
    "rarecast.behaviors": "rarecast.elicitation.behaviors",
    "rarecast.best_of_n": "rarecast.forecasting.best_of_n",
    "rarecast.diagnostics": "rarecast.forecasting.diagnostics",
    "rarecast.forecast": "rarecast.forecasting.fit",
    "rarecast.graders": "rarecast.elicitation.graders",
    "rarecast.query_archive": "rarecast.store.archive",
    "rarecast.query_building": "rarecast.queries.building",
    "rarecast.query_generation": "rarecast.queries.generation",
    "rarecast.ray_engine": "rarecast.elicitation.ray_engine",
    "rarecast.risks": "rarecast.forecasting.risks",
    "rarecast.score_files": "rarecast.store.score_files",
    "rarecast.scoring": "rarecast.elicitation.scoring",
    "rarecast.synthetic": "rarecast.evaluation.synthetic",
    "rarecast.tables": "rarecast.files",
    "rarecast.tail": "rarecast.forecasting.tail",
    "rarecast.yaml_files": "rarecast.files",
}


def new_name(old: str) -> str | None:
    """Where the module ``old`` lives now (submodules of a moved package included), or None."""
    for prefix, target in MOVED.items():
        if old == prefix or old.startswith(prefix + "."):
            return target + old[len(prefix) :]
    return None


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if new_name(fullname) is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        target = new_name(spec.name)
        assert target is not None
        warnings.warn(
            f"{spec.name} moved to {target}; the old name will be removed in rarecast 0.3",
            DeprecationWarning,
            stacklevel=2,
        )
        # The import system keeps the existing module's own __spec__ and __name__, so both names give one object.
        return importlib.import_module(target)

    def exec_module(self, module: ModuleType) -> None:
        pass  # already executed under its new name


def install_aliases() -> None:
    """Let the 0.1 module paths import (once per process)."""
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        # First in line: behind the path finder, ``rarecast.tail.gpd_bayes`` would be found through the aliased
        # parent's __path__ and loaded a second time as a separate module.
        sys.meta_path.insert(0, _MovedModules())
