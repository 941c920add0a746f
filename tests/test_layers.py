"""The package's import graph has no circle: no module reaches itself through the modules it imports.

import-linter (run by `make test`) checks the layer rule between folders; this checks single modules, which
a layers contract does not see inside one folder. Type-only imports (under TYPE_CHECKING) do not count.
"""

from __future__ import annotations

import grimp


def test_no_module_imports_itself_through_others() -> None:
    graph = grimp.build_graph("rarecast", exclude_type_checking_imports=True)
    circles = sorted(
        (module, imported)
        for module in graph.modules
        for imported in graph.find_modules_directly_imported_by(module)
        if graph.chain_exists(importer=imported, imported=module)
    )
    assert circles == []
