"""A Flask app that shows which process and thread served each request.

    corral --threads 4 corral.demo:app
    curl 'http://127.0.0.1:8000/slow?ms=500'

Fire several slow requests at once and compare the thread names and the time taken:
that is the server's concurrency at work.
"""

from __future__ import annotations

import os
import threading
import time

from flask import Flask, Response, jsonify, request

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return (
        "corral demo. Try /slow?ms=500 from several clients at once, e.g.\n"
        "  for i in 1 2 3 4 5 6 7 8; do curl -s 'http://127.0.0.1:8000/slow?ms=1000' & done;"
        " wait\n"
    )


@app.get("/slow")
def slow() -> Response:
    milliseconds = request.args.get("ms", default=0, type=int)
    started = time.monotonic()
    time.sleep(max(0, min(milliseconds, 60_000)) / 1000)
    return jsonify(
        pid=os.getpid(),
        thread=threading.current_thread().name,
        slept_ms=round((time.monotonic() - started) * 1000),
        multithread=request.environ.get("wsgi.multithread"),
        multiprocess=request.environ.get("wsgi.multiprocess"),
    )
