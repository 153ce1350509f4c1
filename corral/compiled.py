"""Which corral runs: the per-request modules compiled by mypyc, or pure Python.

`setup.py` compiles the modules of the per-request path with mypyc where mypy and a C
compiler are at hand, and writes `compiled_modules.json` beside this file: each compiled
module's name and the SHA-256 of the source it was compiled from. A compiled module and
its source sit side by side, and Python's import prefers the compiled one; `choose()`,
run once by `corral/__init__.py` before any of them is imported, decides and makes the
import follow:

- compiled, when every source is the one compiled and the compiled code loads;
- pure Python, when `CORRAL_PURE_PYTHON` is set to anything but "" or "0", when nothing
  was compiled, when a source changed since it was compiled (an edit in a checkout
  installed with `pip install -e`, until that runs again), or when the compiled code
  does not load (built for another Python). A finder then loads every compiled module
  from its source instead, all of them together: compiled modules call each other
  directly, so none is mixed with a source one.

`DESCRIPTION` says which, and why, for the start-up line.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType

PURE_PYTHON_VARIABLE = "CORRAL_PURE_PYTHON"
MANIFEST = Path(__file__).with_name("compiled_modules.json")
_ROOT = Path(__file__).resolve().parent.parent

# Set by `choose()`.
COMPILED = False
DESCRIPTION = "pure Python"


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Finds the modules that were compiled as their `.py` sources."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(
        self, fullname: str, path: object = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        return importlib.util.spec_from_file_location(fullname, _source_of(fullname))


def _source_of(module: str) -> Path:
    return _ROOT.joinpath(*module.split(".")).with_suffix(".py")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _reason_for_pure(manifest: dict[str, object]) -> str | None:
    """Why the compiled modules must not run, or None when they may."""
    if os.environ.get(PURE_PYTHON_VARIABLE, "") not in ("", "0"):
        return f"{PURE_PYTHON_VARIABLE} is set"
    modules = manifest.get("modules")
    if not isinstance(modules, dict):
        return "compiled_modules.json lists no modules"
    for name, digest in sorted(modules.items()):
        source = _source_of(name)
        try:
            changed = _sha256(source) != digest
        except OSError:
            changed = True
        if changed:
            relative = source.relative_to(_ROOT)
            return f"{relative} changed since it was compiled; pip install compiles it again"
    try:
        importlib.import_module(str(manifest.get("library")))
    except ImportError as error:
        return f"the compiled modules do not load: {error}"
    return None


def choose() -> None:
    """Decide which corral runs, once, before any compiled module is imported."""
    global COMPILED, DESCRIPTION
    try:
        manifest = json.loads(MANIFEST.read_text())
    except (OSError, ValueError):
        # Never compiled here: only sources to import.
        DESCRIPTION = "pure Python (not compiled)"
        return
    reason = _reason_for_pure(manifest)
    if reason is None:
        COMPILED = True
        DESCRIPTION = f"compiled with mypyc ({len(manifest['modules'])} modules)"
        return
    sys.meta_path.insert(0, _SourceFinder(frozenset(manifest.get("modules") or ())))
    DESCRIPTION = f"pure Python ({reason})"
