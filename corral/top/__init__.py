"""`corral top ADDRESS`: a live view of a running corral's concurrency, read from the JSON
its `--stats ADDRESS` listener serves (docs/observability.md).

`stats.py` fetches and checks the JSON, `screen.py` turns it into the verdict and the rows
(pure functions, and the plain-text screen), `live.py` draws them with rich, `command.py`
is the command line. Nothing here imports the server: the JSON is the whole interface.
"""
