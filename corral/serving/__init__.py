"""One connection's life and what feeds it: listening sockets, the dispatcher and its
readiness set, the HTTP/1.1 connection loop, and request observers such as the access log.
`assembly` builds all of it from a config."""
