# A gunicorn config file, as gunicorn documents them, using only settings corral supports.
# Where its files go is chosen by the test that runs it, through TEST_OUTPUT_DIR.
import os

_output = os.environ.get("TEST_OUTPUT_DIR", ".")

bind = "127.0.0.1:8000"
workers = 2
worker_class = "gthread"
threads = 2
timeout = 20
graceful_timeout = 5
keepalive = 2
accesslog = os.path.join(_output, "access.log")
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s pid=%(p)s'
errorlog = "-"
loglevel = "info"
max_requests = 1000
max_requests_jitter = 50
pidfile = os.path.join(_output, "corral.pid")
proc_name = "gunicorn-config-test"
preload_app = True


def _record(event):
    with open(os.path.join(_output, "hooks.log"), "a") as log:
        log.write(f"{event} {os.getpid()}\n")


def when_ready(server):
    _record("when_ready")


def post_fork(server, worker):
    _record("post_fork")


def pre_request(worker, req):
    _record(f"pre_request {req.method} {req.path}")


def post_request(worker, req, environ, resp):
    _record(f"post_request {req.path} {resp.status_code}")
