"""Upper bounds measured in the same run: nginx answering from C, and each app
called in a loop with no server at all."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from harness.measurements import IN_PROCESS_CEILING, NGINX_CEILING, Measurement, Run
from harness.processes import LOOPBACK, find_free_port
from harness.runner import SERVER_CPU, RunSettings, measure_under_load
from harness.scenarios import Scenario, Workload

NGINX_CONFIG = """\
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    default_type text/plain;
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{
        listen {host}:{port};
        location / {{ return 200 "Hello, World!"; }}
    }}
}}
"""

IN_PROCESS_MAX_SECONDS = 3.0


def find_nginx() -> str | None:
    return shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx",) if Path(path).exists()), None
    )


def measure_nginx(scenario: Scenario, workload: Workload, settings: RunSettings) -> Measurement:
    """nginx with one worker on CPU 0: the most any server could get from this machine."""
    measurement = Measurement(
        scenario=scenario.key,
        app=workload.app,
        label="nginx return 200 (1 worker)",
        family="nginx",
        kind=NGINX_CEILING,
    )
    nginx = find_nginx()
    if nginx is None:
        measurement.failure = "nginx not installed (apt-get install nginx-light)"
        return measurement
    port = find_free_port()
    with tempfile.TemporaryDirectory(prefix="corral-bench-nginx-") as root:
        config = Path(root) / "nginx.conf"
        config.write_text(NGINX_CONFIG.format(root=root, host=LOOPBACK, port=port))
        argv = [nginx, "-p", root, "-e", f"{root}/error.log", "-c", str(config)]
        return measure_under_load(argv, measurement, scenario, workload, settings, port)


def measure_in_process(
    scenario: Scenario, workload: Workload, settings: RunSettings
) -> Measurement:
    """The app called in a tight loop on CPU 0: what the app costs without any server."""
    measurement = Measurement(
        scenario=scenario.key,
        app=workload.app,
        label="in-process call loop (no server)",
        family="in-process",
        kind=IN_PROCESS_CEILING,
    )
    seconds = min(settings.seconds, IN_PROCESS_MAX_SECONDS)
    for _ in range(settings.runs):
        command = [
            "taskset", "-c", str(SERVER_CPU), str(settings.python), "-m", "harness.inprocess",
            workload.app, str(seconds),
        ]  # fmt: skip
        completed = subprocess.run(
            command,
            cwd=settings.bench_dir,
            env=settings.server_env,
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=False,
        )
        if completed.returncode != 0:
            lines = completed.stderr.strip().splitlines()
            measurement.failure = "call loop failed: " + (lines[-1] if lines else "no output")
            return measurement
        calls_per_second = float(json.loads(completed.stdout)["calls_per_second"])
        measurement.runs.append(
            Run(figure=workload.figure(calls_per_second), requests_per_second=calls_per_second)
        )
    return measurement
