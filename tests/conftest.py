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


@pytest.fixture(params=list(MODELS), ids=list(MODELS))
def model(request: pytest.FixtureRequest) -> list[str]:
    """The command-line options of each concurrency model in turn."""
    return MODELS[request.param]


@pytest.fixture
def server(start_server: Callable[..., RunningServer], model: list[str]) -> RunningServer:
    """The behaviours app under each concurrency model."""
    return start_server(options=model)
