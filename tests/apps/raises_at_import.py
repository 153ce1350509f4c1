"""An application whose import raises, as one whose settings cannot be read does."""

from __future__ import annotations


def read_ratio() -> float:
    return 1 / 0


RATIO = read_ratio()
