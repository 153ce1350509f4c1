"""`tests.requirements.require`: a missing component skips a test, or fails it under
CORRAL_REQUIRE_ALL=1."""

from __future__ import annotations

import pytest

from tests.requirements import REQUIRE_ALL, require


def test_a_present_component_lets_the_test_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_ALL, "1")
    require(True, "present")


def test_a_missing_component_skips_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_ALL, raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"^the corpus is missing$"):
        require(False, "the corpus is missing")


def test_require_all_turns_the_skip_into_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_ALL, "1")
    with pytest.raises(pytest.fail.Exception, match=r"^the corpus is missing .*CORRAL_REQUIRE"):
        require(False, "the corpus is missing")
