"""HTTP/1.1 protocol layer: bytes in, events out; events in, bytes out. No I/O here."""
