"""Components a test needs from outside the repository: the shared request corpus beside
it, and programs such as a proxy or a client to test against.

A test calls `require(condition, reason)`. Where the component is missing the test is
skipped with `reason`, so a clone of the project alone still gets a green run; with
`CORRAL_REQUIRE_ALL=1` in the environment (CI sets it) the skip becomes a failure, so a
missing component can never pass unnoticed there.
"""

from __future__ import annotations

import os

import pytest

REQUIRE_ALL = "CORRAL_REQUIRE_ALL"


def require(condition: bool, reason: str) -> None:
    """Skip the calling test, or fail it under CORRAL_REQUIRE_ALL=1, unless `condition`."""
    if condition:
        return
    if os.environ.get(REQUIRE_ALL) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ALL}=1: every component is required)", pytrace=False)
    pytest.skip(reason)
