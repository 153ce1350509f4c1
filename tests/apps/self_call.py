"""A Flask app whose handler calls a server, by default its own, for the self-call guard.

`/call` fetches `url` (by default this server's `/inner`, found from the request's Host
field and scheme; over HTTPS trusting the authority SSL_CERT_FILE names) with
`urllib.request` and answers, as JSON, the status the call got, its
Retry-After field and how long it took. Any request given `gate=PORT` first connects to
127.0.0.1:PORT and waits for one byte there, so a test knows the request is inside the
application and decides when it goes on; `/call` given `after=PORT` waits there the same
way once its call is answered, so that its thread stays busy until the test lets it go.
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

from flask import Flask, Response, jsonify, request

app = Flask(__name__)
# No proxy from the environment: the call must reach the address it names.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _wait_at(gate: str | None) -> None:
    if gate:
        with socket.create_connection(("127.0.0.1", int(gate)), timeout=30) as sock:
            sock.recv(1)


@app.before_request
def wait_at_gate() -> None:
    _wait_at(request.args.get("gate"))


@app.get("/call")
def call() -> Response:
    url = request.args.get("url") or f"{request.scheme}://{request.host}/inner"
    started = time.monotonic()
    try:
        with _opener.open(url, timeout=10) as response:
            status, retry_after = response.status, response.headers.get("Retry-After")
            response.read()
    except urllib.error.HTTPError as error:
        status, retry_after = error.code, error.headers.get("Retry-After")
    except OSError as error:
        # A call that timed out or was reset: what the test sees without the guard.
        return jsonify(status=0, error=str(error), seconds=time.monotonic() - started)
    seconds = time.monotonic() - started
    _wait_at(request.args.get("after"))
    return jsonify(status=status, retry_after=retry_after, seconds=seconds)


@app.get("/inner")
def inner() -> str:
    return "inner"


@app.get("/slow")
def slow() -> str:
    time.sleep(int(request.args.get("ms", "1000")) / 1000)
    return "slow"


@app.get("/hello")
def hello() -> str:
    return "hello"
