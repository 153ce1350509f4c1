"""A small Flask app used to compare corral with Werkzeug's own server."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Flask, Response, jsonify, request

app = Flask(__name__)


@app.get("/hello")
def hello() -> object:
    return jsonify(message="hello", args=request.args.to_dict(flat=False))


@app.post("/form")
def form() -> object:
    return jsonify(form=request.form.to_dict(flat=False), content_type=request.content_type)


@app.post("/upload")
def upload() -> object:
    data = request.get_data()
    return jsonify(
        length=len(data),
        head=data[:20].decode("latin-1"),
        transfer_encoding=request.headers.get("Transfer-Encoding"),
    )


@app.get("/stream")
def stream() -> Response:
    def generate() -> Iterator[str]:
        for number in range(10):
            yield f"line {number}\n"

    return Response(generate(), mimetype="text/plain")


@app.get("/missing")
def missing() -> object:
    return jsonify(error="not here"), 404
