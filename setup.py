"""Compiles corral's per-request modules with mypyc where it can; pure Python otherwise.

Everything else about the package is in pyproject.toml. The modules below run on every
request; compiled, they take measurably less CPU per request (bench/per_request_cost.py).
They are compiled when mypy (mypyc ships with it) imports and a C compiler works, unless
CORRAL_PURE_PYTHON is set to anything but "" or "0"; any failure leaves the pure-Python
package, with a warning. The sources are installed too: `corral.compiled` decides at
start-up which of the two runs, from the `compiled_modules.json` written here.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
COMPILED_MODULES = (
    "corral.http.parser",
    "corral.http.framing",
    "corral.wsgi.environ",
    "corral.wsgi.input",
    "corral.wsgi.response",
    "corral.serving.connection",
)
# One shared library holds them all, inside the package: compiled modules of one group
# call each other directly. Beside it, each module has a small extension of its own name.
LIBRARY = "corral.per_request__mypyc"
MANIFEST = "corral/compiled_modules.json"
PURE_PYTHON_VARIABLE = "CORRAL_PURE_PYTHON"


def _source(module: str) -> Path:
    return ROOT.joinpath(*module.split(".")).with_suffix(".py")


def _warn(message: str) -> None:
    print(f"corral: {message}; installing pure Python", file=sys.stderr)


# The commands that build extensions. pip also runs this file for the metadata alone
# (egg_info, dist_info), where compiling would only cost time (mypyc type-checks first).
_BUILDING = {"build", "build_ext", "bdist_wheel", "editable_wheel", "develop", "install"}


def _extensions() -> list[Any]:
    if os.environ.get(PURE_PYTHON_VARIABLE, "") not in ("", "0"):
        return []
    if _BUILDING.isdisjoint(sys.argv[1:]):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        _warn("mypyc is not installed")
        return []
    try:
        paths = [str(_source(module).relative_to(ROOT)) for module in COMPILED_MODULES]
        # mypy reads the modules they import too; where those import packages missing
        # here (optional extras), their types differ from `mypy corral`'s, and an error
        # there must not keep the modules above from compiling.
        options = ["--follow-imports=silent"]
        extensions: list[Any] = mypycify(
            [*options, *paths], group_name=LIBRARY.removesuffix("__mypyc")
        )
    except (Exception, SystemExit) as error:
        _warn(f"mypyc could not compile the per-request modules ({error})")
        return []
    return extensions


class OptionalBuildExt(build_ext):
    """build_ext that falls back to pure Python when the C compiler fails or is missing,
    and writes the manifest `corral.compiled` reads beside the compiled modules."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as error:
            # A manifest an earlier build left stays: its digests tell whether the
            # compiled modules it describes still match their sources.
            _warn(f"the C compiler failed ({error})")
            return
        manifest = {
            "library": LIBRARY,
            "modules": {
                module: hashlib.sha256(_source(module).read_bytes()).hexdigest()
                for module in COMPILED_MODULES
            },
        }
        text = json.dumps(manifest, indent=2) + "\n"
        for base in {Path(self.build_lib), *([ROOT] if self.inplace else [])}:
            target = base / MANIFEST
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
