"""Every file in docs/deploy/ is one a test reads and runs or validates: no recipe goes
untested."""

from __future__ import annotations

from tests.nginx import RECIPES
from tests.server import ROOT

DEPLOY = ROOT / "docs" / "deploy"


def _test_sources() -> str:
    return "".join(path.read_text() for path in (ROOT / "tests").rglob("*.py"))


def test_every_nginx_recipe_is_started_by_a_test() -> None:
    tests = "".join(path.read_text() for path in (ROOT / "tests" / "functional").glob("test_*.py"))
    recipes = sorted(path.name for path in RECIPES.glob("*.conf"))
    assert recipes, RECIPES
    for name in recipes:
        assert f'"{name}"' in tests, f"no test starts nginx with docs/deploy/nginx/{name}"


def test_every_deployment_file_is_named_by_a_test() -> None:
    tests = _test_sources()
    files = sorted(path for path in DEPLOY.rglob("*") if path.is_file() and path.suffix != ".md")
    assert len(files) >= 10, files
    untested = [
        str(path.relative_to(ROOT))
        for path in files
        # By name, or (Kubernetes' manifests, read as a folder) by the folder's.
        if path.name not in tests and f'"{path.parent.name}"' not in tests
    ]
    assert untested == [], f"no test reads {untested}"
