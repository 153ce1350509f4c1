"""One process's running counts of the requests it answers, as a plain list.

The connection adds to it as each response ends, without a call: a few list additions
are the whole per-request cost of `--stats` (measured: each call or object more on the
request path costs about a microsecond against a hello world's 25). The slot table's
writer (`corral.process.slot_writer`) copies the list into shared memory a few times a
second. The list is shared by the threads of the process: each addition is one
`list[i] += n` on an int or a float, which CPython's interpreter does without letting
another thread run in the middle (no call and no jump between the read and the write).

Layout, by index: answers by status class (index = status // 100, so 0 to 9: 2 for 2xx),
then bytes received (request heads and bodies as framed on the wire), bytes sent
(response heads and bodies, chunk framing not counted), seconds in the app (a float),
and the duration histogram's buckets (`DURATION_BOUNDS`, one more for the slower).
Requests corral refused itself add to their class only.
"""

from __future__ import annotations

# Upper bounds, in seconds, of the request duration histogram's buckets (Prometheus's
# "le"), from a hello world's sub-millisecond answers to a minute.
DURATION_BOUNDS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
BUCKET_COUNT = len(DURATION_BOUNDS) + 1

STATUS_CLASSES = 10
BYTES_IN = STATUS_CLASSES
BYTES_OUT = BYTES_IN + 1
DURATION_SUM = BYTES_OUT + 1
FIRST_BUCKET = DURATION_SUM + 1
COUNTS_SIZE = FIRST_BUCKET + BUCKET_COUNT


def new_counts() -> list[float]:
    """Counts of nothing yet, in the layout above."""
    counts: list[float] = [0] * COUNTS_SIZE
    counts[DURATION_SUM] = 0.0
    return counts
