"""The keep-alive rule of docs/deploy/nginx.md, with a real nginx: corral's --keep-alive
longer than nginx's upstream keepalive_timeout, so that nginx always closes an idle
connection first and never sends a request on one corral is closing.

The recipe as written (nginx's 60 s against corral's 75 s) runs with requests spaced
just past corral's default --keep-alive (5 s) and gunicorn's (2 s), the idle times at which
an upstream with its default closes as nginx reuses the connection: zero 502s are asserted.
Its 60 s against 75 s cannot be waited out in a test, so the rule also runs scaled down
(nginx 1 s, corral 2 s) with requests spaced just under and just past each, zero 502s
asserted too. Beside it, at the same time, the case the rule forbids (nginx's 60 s
against corral's 1 s, requests spaced 1.0 to 1.1 s, as corral's idle sweep closes the
connection) runs and is reported, not asserted: the race is real, but on loopback
nginx learns of corral's close within microseconds, so it is rarely seen here.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.nginx import FIRST_UPSTREAM, SECOND_UPSTREAM, Nginx, Tally, nginx, send_load
from tests.server import RunningServer

SECONDS = 30.0
RULE_SPACINGS = (0.9, 0.95, 1.05, 2.05)
RECIPE_SPACINGS = (2.05, 5.05)
COUNTER_SPACINGS = (1.0, 1.02, 1.04, 1.06, 1.08, 1.1)


def paced(port: int, spacings: tuple[float, ...], results: dict[str, Tally], name: str) -> None:
    results[name] = send_load(
        port, SECONDS, "POST", clients=1, spacing=lambda n: spacings[n % len(spacings)]
    )


@pytest.mark.timeout(120)
def test_corral_keeping_connections_longer_than_nginx_meets_no_reused_connection_closing(
    tmp_path: Path,
) -> None:
    with (
        RunningServer(options=["--threads", "4", "--keep-alive", "75"]) as recipe_server,
        RunningServer(options=["--threads", "4", "--keep-alive", "2"]) as rule_server,
        RunningServer(options=["--threads", "4", "--keep-alive", "1"]) as counter_server,
        nginx(
            tmp_path,
            "corral.conf",
            {
                FIRST_UPSTREAM: f"127.0.0.1:{rule_server.port}",
                SECOND_UPSTREAM: f"127.0.0.1:{rule_server.port}",
                "keepalive_timeout 60s;": "keepalive_timeout 1s;",
            },
        ) as rule_front,
        nginx(
            tmp_path,
            "corral.conf",
            {
                FIRST_UPSTREAM: f"127.0.0.1:{counter_server.port}",
                SECOND_UPSTREAM: f"127.0.0.1:{counter_server.port}",
            },
        ) as counter_front,
        nginx(
            tmp_path,
            "corral.conf",
            {
                FIRST_UPSTREAM: f"127.0.0.1:{recipe_server.port}",
                SECOND_UPSTREAM: f"127.0.0.1:{recipe_server.port}",
            },
        ) as recipe_front,
    ):
        results: dict[str, Tally] = {}
        runs = [
            threading.Thread(
                target=paced, args=(recipe_front.port, RECIPE_SPACINGS, results, "recipe")
            ),
            threading.Thread(target=paced, args=(rule_front.port, RULE_SPACINGS, results, "rule")),
            threading.Thread(
                target=paced, args=(counter_front.port, COUNTER_SPACINGS, results, "counter")
            ),
        ]
        for run in runs:
            run.start()
        for run in runs:
            run.join(SECONDS + 60)
        rule_lines = rule_front.failed_upstream_lines()
        recipe_lines = recipe_front.failed_upstream_lines()
        counter_lines = counter_front.failed_upstream_lines()
    rule, counter, recipe = results["rule"], results["counter"], results["recipe"]
    print(describe("recipe (nginx 60 s, corral 75 s)", recipe, recipe_front, recipe_lines))
    print(describe("rule (nginx 1 s, corral 2 s)", rule, rule_front, rule_lines))
    print(describe("counter-case (nginx 60 s, corral 1 s)", counter, counter_front, counter_lines))
    assert rule.total >= 15, rule
    assert rule.failures == [] and rule.server_errors == 0, (rule.statuses, rule.failures)
    assert rule_lines == [], "\n".join(rule_lines)
    assert recipe.total >= 6, recipe
    assert recipe.failures == [] and recipe.server_errors == 0, (recipe.statuses, recipe.failures)
    assert recipe_lines == [], "\n".join(recipe_lines)


def describe(name: str, tally: Tally, front: Nginx, failed_lines: list[str]) -> str:
    return (
        f"{name}: {tally.total} requests, statuses {dict(tally.statuses)}, "
        f"{len(tally.failures)} failed; nginx logged {len(failed_lines)} requests failed "
        f"upstream" + "".join(f"\n  {line}" for line in failed_lines)
    )
