"""The stats thread imports nothing: a master forks workers while it runs, and a fork
made while another thread imports a module leaves the child that module's import lock
held by no thread, so the worker hangs in its own import of it (seen: both workers of
the Docker recipe's `-w 2 --stats` stuck in `import platform`, which prometheus_client's
import on the stats thread was holding at the fork)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.server import ROOT

# Every module found after `start()`, and the thread that looked for it, while the
# stats server answers / and /metrics.
WATCH = """
import importlib.abc, json, sys, threading, urllib.request

found = []

class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        found.append((name, threading.current_thread().name))
        return None

from corral.process.slot_table import SlotTable
from corral.process.stats_server import StatsServer, open_stats_listener

server = StatsServer(open_stats_listener("127.0.0.1:0"), SlotTable(1))
sys.meta_path.insert(0, Watch())
server.start()
for path in ("/", "/metrics", "/", "/metrics"):
    with urllib.request.urlopen(server.url + path, timeout=10) as response:
        assert response.status == 200, path
print(json.dumps(found))
"""


def test_the_stats_thread_imports_nothing_a_fork_could_leave_locked() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WATCH], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    off_main = [(name, thread) for name, thread in found if thread != "MainThread"]
    assert off_main == [], off_main
