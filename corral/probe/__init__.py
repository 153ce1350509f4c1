"""`corral probe URL`: how many requests an HTTP server, corral or any other, really
serves at once on one endpoint, measured from outside with real clients.

`clients.py` sends the requests, `verdict.py` reads their latencies (pure functions),
`plot.py` draws them, `command.py` is the command line. Nothing here imports the server.
"""
