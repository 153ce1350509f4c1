"""PEP 3333 only: the environ, `wsgi.input`, start_response and the app's output. Knows
HTTP through `corral.http` and nothing of sockets, workers or processes."""
