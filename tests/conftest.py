from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.server import MODELS, RunningServer


@pytest.fixture
def start_server() -> Iterator[Callable[..., RunningServer]]:
    """Start corral servers for one test; every one is stopped afterwards."""
    started: list[RunningServer] = []

    def start(*args: object, **kwargs: object) -> RunningServer:
        server = RunningServer(*args, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module", params=list(MODELS), ids=list(MODELS))
def model_name(request: pytest.FixtureRequest) -> str:
    """Each concurrency model in turn, by its name in `tests.server.MODELS`."""
    return str(request.param)


@pytest.fixture(scope="module")
def server(model_name: str) -> Iterator[RunningServer]:
    """The behaviours app under each concurrency model, one server per model and module.

    Idle connections are kept far longer than any client timeout in the tests, so a
    connection the server should close but does not shows as a timeout, never as a late
    close.
    """
    with RunningServer(options=[*MODELS[model_name], "--keep-alive", "60"]) as running:
        yield running
