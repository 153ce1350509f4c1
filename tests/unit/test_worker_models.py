"""The registry of concurrency models: each entry builds, reads real settings, and is
among the models every behaviour test runs under."""

from __future__ import annotations

import pytest

from corral.config import SETTINGS_BY_NAME, build_config
from corral.serving.assembly import make_worker_model
from corral.workers import MODELS, WorkerModel, make_model
from tests.server import MODELS as TESTED_MODELS


@pytest.mark.parametrize("name", list(MODELS))
def test_each_model_builds_from_the_settings_it_names(name: str) -> None:
    entry = MODELS[name]
    assert all(setting in SETTINGS_BY_NAME for setting in entry.settings)
    # process_per_request defaults to 0, meaning "not this model".
    model = make_model(name, lambda setting: SETTINGS_BY_NAME[setting].default or 2)
    assert isinstance(model, WorkerModel)
    assert model.concurrency() >= 1


def test_behaviour_tests_run_under_every_model() -> None:
    assert set(MODELS) <= set(TESTED_MODELS)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, "OneAtATime"),
        ({"threads": 4}, "ThreadPool"),
        ({"thread_per_request": True}, "ThreadPerRequest"),
        ({"process_per_request": 2}, "ProcessPerRequest"),
        ({"worker_class": "gevent"}, "Coroutines"),
        ({"workers": 2, "threads": 8}, "ThreadPool"),
    ],
)
def test_the_settings_choose_one_model(overrides: dict[str, object], expected: str) -> None:
    model = make_worker_model(build_config(None, overrides))
    assert type(model).__name__ == expected
