"""Every nginx recipe in docs/deploy/nginx/ is one a functional test starts: no recipe
goes untested."""

from __future__ import annotations

from tests.nginx import RECIPES
from tests.server import ROOT


def test_every_nginx_recipe_is_started_by_a_test() -> None:
    tests = "".join(path.read_text() for path in (ROOT / "tests" / "functional").glob("test_*.py"))
    recipes = sorted(path.name for path in RECIPES.glob("*.conf"))
    assert recipes, RECIPES
    for name in recipes:
        assert f'"{name}"' in tests, f"no test starts nginx with docs/deploy/nginx/{name}"
