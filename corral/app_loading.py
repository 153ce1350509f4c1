"""Finding the WSGI application named on the command line: MODULE[:NAME | :FACTORY(ARGS)]."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Iterator
from typing import Any

_IMPORT_MACHINERY = (
    os.path.dirname(os.path.abspath(__file__)) + os.sep,
    os.path.dirname(os.path.abspath(importlib.__file__)) + os.sep,
    "<frozen importlib",
)


class AppLoadError(Exception):
    """The application cannot be found, raised while loading, or is not a WSGI callable.

    `traceback_text` is the traceback of an exception the application raised, with only
    the application's own frames (empty for a name that is not found); `source_files` are
    the files in that traceback, for --reload to watch until one is fixed.
    """

    def __init__(
        self, message: str, traceback_text: str = "", source_files: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.traceback_text = traceback_text
        self.source_files = source_files


def load_app(spec: str) -> Any:
    """Import `spec` and return the application.

    `module` alone looks for `application`, then `app`; `module:name` takes that
    attribute (dotted paths allowed); `module:factory()` or `module:factory('arg', 1)`
    calls a factory with literal arguments. The current directory is importable.
    """
    module_name, _, expression = spec.partition(":")
    if not module_name:
        raise AppLoadError(f"{spec!r}: expected MODULE:APP")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
        if not expression:
            for candidate in ("application", "app"):
                if hasattr(module, candidate):
                    return _checked(getattr(module, candidate), f"{module_name}:{candidate}")
            raise AppLoadError(f"module {module_name!r} has no 'application' or 'app'")
        return _checked(_evaluate(module, expression, spec), spec)
    except AppLoadError:
        raise
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            raise AppLoadError(f"no module named {error.name!r} (from {spec!r})") from None
        raise raised_by_the_app(error, spec) from None
    except Exception as error:
        raise raised_by_the_app(error, spec) from None


def raised_by_the_app(
    error: BaseException, spec: str, loaders: tuple[str, ...] = ()
) -> AppLoadError:
    """The app's exception, told without the frames of corral, importlib and the
    `loaders` (path prefixes of another loader, such as Flask's CLI), which only say how
    the import was reached."""
    machinery = _IMPORT_MACHINERY + loaders
    report = traceback.TracebackException.from_exception(error)
    files: list[str] = []
    for part in _chain(report):
        part.stack = traceback.StackSummary.from_list(
            [frame for frame in part.stack if not frame.filename.startswith(machinery)]
        )
        files.extend(frame.filename for frame in part.stack)
        if part.exc_type is not None and issubclass(part.exc_type, SyntaxError) and part.filename:
            files.append(part.filename)
    told = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return AppLoadError(
        f"cannot load app {spec!r}: {told}",
        "".join(report.format()),
        tuple(dict.fromkeys(files)),
    )


def _chain(report: traceback.TracebackException) -> Iterator[traceback.TracebackException]:
    seen: set[int] = set()
    pending: list[traceback.TracebackException | None] = [report]
    while pending:
        part = pending.pop()
        if part is None or id(part) in seen:
            continue
        seen.add(id(part))
        yield part
        pending.extend((part.__cause__, part.__context__))


def check_importable(spec: str) -> None:
    """Raise `AppLoadError` if the module of `spec` cannot be found, without importing it
    (the master leaves importing to its workers)."""
    module_name = spec.partition(":")[0]
    if not module_name:
        raise AppLoadError(f"{spec!r}: expected MODULE:APP")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise AppLoadError(f"no module named {module_name!r} (from {spec!r})")


def _evaluate(module: Any, expression: str, spec: str) -> Any:
    try:
        tree = ast.parse(expression.strip(), mode="eval").body
    except SyntaxError:
        raise AppLoadError(f"{spec!r}: cannot read {expression!r} as a name or call") from None
    call = tree if isinstance(tree, ast.Call) else None
    target = call.func if call is not None else tree
    parts: list[str] = []
    while isinstance(target, ast.Attribute):
        parts.insert(0, target.attr)
        target = target.value
    if not isinstance(target, ast.Name):
        raise AppLoadError(f"{spec!r}: {expression!r} is not a name or a call of a name")
    parts.insert(0, target.id)
    obj = module
    for part in parts:
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppLoadError(f"{spec!r}: {module.__name__!r} has no {part!r}") from None
    if call is None:
        return obj
    try:
        args = [ast.literal_eval(arg) for arg in call.args]
        kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg}
    except ValueError:
        raise AppLoadError(f"{spec!r}: factory arguments must be literals") from None
    return obj(*args, **kwargs)


def _checked(app: Any, spec: str) -> Any:
    if not callable(app):
        raise AppLoadError(f"{spec!r} is not callable, so not a WSGI application")
    return app
