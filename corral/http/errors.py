"""Failures in a client's request, each carrying the status to answer with."""


class RequestError(Exception):
    """The request cannot be served; answer `status` and close the connection."""

    status = 400
    reason = "Bad Request"
    # Fields the answer carries besides its framing, as (name, value) pairs.
    headers: tuple[tuple[str, str], ...] = ()
    # True when whoever raised it logs each one in full itself (the self-call guard):
    # it is then not counted among the refusals as well.
    logged_in_full = False


class RequestLineTooLong(RequestError):
    status = 414
    reason = "URI Too Long"


class FieldsTooLarge(RequestError):
    status = 431
    reason = "Request Header Fields Too Large"


class UnsupportedVersion(RequestError):
    status = 505
    reason = "HTTP Version Not Supported"


class UnsupportedTransferCoding(RequestError):
    # RFC 9112 section 6.1: a transfer coding the server does not understand gets 501.
    status = 501
    reason = "Not Implemented"


class BodyTooLarge(RequestError):
    status = 413
    reason = "Content Too Large"


class IncompleteBody(RequestError):
    """The peer closed the connection before the body ended."""
