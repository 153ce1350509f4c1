"""`corral top ADDRESS`: a view of a running corral's concurrency, read from the JSON its
`--stats ADDRESS` listener serves (docs/observability.md).

`stats.py` fetches and checks the JSON. Nothing here imports the server: the JSON is the
whole interface.
"""
