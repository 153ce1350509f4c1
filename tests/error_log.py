"""Reading what corral wrote to its error log."""

from __future__ import annotations

import re
from collections import Counter

# [2026-11-30 15:20:00 +0000] [PID] [LEVEL] message
_LOG_LINE = re.compile(r"\[[^]]*\] \[(\d+)\] \[\w+\] (.*)")
_FULL = re.compile(r"127\.0\.0\.1:\d+: refused: (.*); answered (\d+) ")
_SUMMARY = re.compile(r"refused ([\d,]+) requests? in the last [\d.]+ s: (.*)")
_SUMMARY_PART = re.compile(r"([\d,]+) × (\d+) [^(]*\((.*?)\)(?:, |$)")


def counted_in_error_log(log: str) -> tuple[Counter[tuple[int, str]], int]:
    """Refusals the error log accounts for, by (status, cause), and its lines about them.

    Per process, a summary covers every refusal of its period, those logged in full
    among them; a refusal logged in full after the process's last summary counts once.
    """
    counted: Counter[tuple[int, str]] = Counter()
    since_summary: dict[str, Counter[tuple[int, str]]] = {}
    lines = 0
    for line in log.splitlines():
        match = _LOG_LINE.fullmatch(line)
        if match is None:
            continue
        pid, message = match.groups()
        full = _FULL.match(message)
        summary = _SUMMARY.fullmatch(message)
        if full is not None:
            lines += 1
            since_summary.setdefault(pid, Counter())[(int(full[2]), full[1])] += 1
        elif summary is not None:
            lines += 1
            parts = Counter(
                {
                    (int(status), cause): int(count.replace(",", ""))
                    for count, status, cause in _SUMMARY_PART.findall(summary[2])
                }
            )
            assert sum(parts.values()) == int(summary[1].replace(",", "")), line
            counted += parts
            since_summary.pop(pid, None)
    for left in since_summary.values():
        counted += left
    return counted, lines
