"""No import cycles in corral, type-only imports included. (`lint-imports`, run by
scripts/check, checks which layer may import which; a cycle inside one layer would still
pass it.)"""

from __future__ import annotations

import grimp


def test_no_module_of_corral_imports_one_that_imports_it_back() -> None:
    graph = grimp.build_graph("corral")
    cycles = sorted(
        (importer, imported)
        for importer in graph.modules
        for imported in graph.find_modules_directly_imported_by(importer)
        if graph.chain_exists(importer=imported, imported=importer)
    )
    assert cycles == []
