"""The start-up line says which corral serves, compiled by mypyc or pure Python
(`corral.compiled`); a server started from this tree runs the one the tests import."""

from __future__ import annotations

from collections.abc import Callable

from corral import compiled
from corral.version import __version__
from tests.requirements import require
from tests.server import RunningServer, fetch

PURE = {compiled.PURE_PYTHON_VARIABLE: "1"}


def test_the_start_up_line_says_what_the_tests_import(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server()
    line = f"corral {__version__} (pid {server.process.pid}), {compiled.DESCRIPTION}\n"
    assert line in server.log, server.log
    assert fetch(server.port)[0] == 200


def test_a_compiled_build_serves_compiled(start_server: Callable[..., RunningServer]) -> None:
    require(compiled.COMPILED, f"this corral runs {compiled.DESCRIPTION}")
    server = start_server(options=["-w", "2"])
    # The master says so once it has bound its sockets.
    line = f"corral master (pid {server.process.pid}), compiled with mypyc ("
    assert server.wait_for_log(line, 10), server.log
    assert fetch(server.port)[0] == 200


def test_corral_pure_python_serves_pure_python(start_server: Callable[..., RunningServer]) -> None:
    server = start_server(env=PURE)
    pid = server.process.pid
    assert f"(pid {pid}), pure Python (CORRAL_PURE_PYTHON is set)\n" in server.log, server.log
    assert fetch(server.port)[0] == 200
    with_workers = start_server(options=["-w", "2"], env=PURE)
    pid = with_workers.process.pid
    line = f"corral master (pid {pid}), pure Python (CORRAL_PURE_PYTHON is set)\n"
    assert with_workers.wait_for_log(line, 10), with_workers.log
    assert fetch(with_workers.port)[0] == 200
