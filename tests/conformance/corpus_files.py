"""Where the shared request corpus lives, and how one of its files becomes wire bytes.

Shared by the corpus replay and the parser's fuzz target, which seeds from it.
"""

from __future__ import annotations

import re
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "gunicorn-requests"


def wire_bytes(text: bytes) -> bytes:
    """The bytes a corpus file stands for, transformed as its README prescribes."""
    data = text.replace(b"\n", b"").replace(b"\\r\\n", b"\r\n")
    data = data.replace(b"\\0", b"\0").replace(b"\\n", b"\n").replace(b"\\t", b"\t")
    data = re.sub(rb"\\x([0-9A-Fa-f]{2})", lambda match: bytes([int(match[1], 16)]), data)
    assert b"\\" not in data, "a backslash escape the corpus README does not describe"
    return data
