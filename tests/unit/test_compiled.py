"""Which corral runs: the modules setup.py compiled with mypyc, or their sources.

Each case imports corral in a fresh interpreter, as a server starts, and asks it where
the per-request modules came from.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from corral.compiled import MANIFEST, PURE_PYTHON_VARIABLE
from tests.requirements import require

ROOT = Path(__file__).resolve().parents[2]
# What the fresh interpreter prints: the start-up line's words, then each module's file.
REPORT = """
import json, sys
import corral
from corral import compiled
names = json.loads(sys.argv[1])
for name in names:
    __import__(name)
print(json.dumps([compiled.DESCRIPTION, [sys.modules[name].__file__ for name in names]]))
"""


def compiled_modules() -> list[str]:
    require(
        MANIFEST.exists(),
        "corral was installed without compiling (no mypy or C compiler at install time)",
    )
    return sorted(json.loads(MANIFEST.read_text())["modules"])


def imported(names: list[str], root: Path = ROOT, **environ: str) -> tuple[str, list[str]]:
    """(the start-up line's words, each module's file) in a fresh interpreter that finds
    corral under `root`, with `environ` added and CORRAL_PURE_PYTHON unset unless given."""
    env = {key: value for key, value in os.environ.items() if key != PURE_PYTHON_VARIABLE}
    env["PYTHONPATH"] = str(root)
    env.update(environ)
    finished = subprocess.run(
        [sys.executable, "-c", REPORT, json.dumps(names)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    description, files = json.loads(finished.stdout)
    return description, files


def test_the_compiled_modules_run_by_default() -> None:
    names = compiled_modules()
    description, files = imported(names)
    assert description == f"compiled with mypyc ({len(names)} modules)"
    assert all(file.endswith(".so") for file in files), files


@pytest.mark.parametrize("value", ["1", "yes"])
def test_corral_pure_python_runs_every_source(value: str) -> None:
    names = compiled_modules()
    description, files = imported(names, **{PURE_PYTHON_VARIABLE: value})
    assert description == f"pure Python ({PURE_PYTHON_VARIABLE} is set)"
    assert files == [str(ROOT.joinpath(*name.split(".")).with_suffix(".py")) for name in names]


def test_corral_pure_python_set_to_0_or_empty_runs_the_compiled_modules() -> None:
    names = compiled_modules()
    for value in ("0", ""):
        description, _ = imported(names, **{PURE_PYTHON_VARIABLE: value})
        assert description.startswith("compiled with mypyc"), value


def test_a_source_changed_since_it_was_compiled_runs_every_source(tmp_path: Path) -> None:
    names = compiled_modules()
    # A copy of the compiled package, one source of which is then edited.
    shutil.copytree(ROOT / "corral", tmp_path / "corral")
    edited = tmp_path.joinpath(*names[0].split(".")).with_suffix(".py")
    edited.write_text(edited.read_text() + "\n# edited\n")
    description, files = imported(names, root=tmp_path)
    relative = edited.relative_to(tmp_path)
    assert description == (
        f"pure Python ({relative} changed since it was compiled; pip install compiles it again)"
    )
    assert all(file.endswith(".py") for file in files), files


def test_without_a_manifest_corral_says_it_was_not_compiled(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "corral", tmp_path / "corral", ignore=shutil.ignore_patterns("*.so"))
    (tmp_path / "corral" / MANIFEST.name).unlink(missing_ok=True)
    description, files = imported(["corral.http.parser"], root=tmp_path)
    assert description == "pure Python (not compiled)"
    assert files == [str(tmp_path / "corral" / "http" / "parser.py")]


def test_compiled_modules_that_do_not_load_leave_every_source(tmp_path: Path) -> None:
    names = compiled_modules()
    shutil.copytree(ROOT / "corral", tmp_path / "corral")
    library = json.loads(MANIFEST.read_text())["library"].split(".")
    # As a library built for another Python or machine fails to load.
    shared = list(tmp_path.joinpath(*library[:-1]).glob(library[-1] + ".*.so"))
    assert shared, library
    for path in shared:
        path.write_bytes(b"not a shared library")
    description, files = imported(names, root=tmp_path)
    assert description.startswith("pure Python (the compiled modules do not load: "), description
    assert all(file.endswith(".py") for file in files), files
