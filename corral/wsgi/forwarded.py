"""What a trusted proxy says of the client: X-Forwarded-For, -Host, -Port, -Prefix, the
scheme headers of gunicorn's `secure_scheme_headers` (X-Forwarded-Proto among them), and
Forwarded (RFC 7239), applied to the environ.

`apply_forwarded` is a pure function of the environ being built, the request's fields,
the connection's peer and a `ForwardedHeaders` policy; `build_environ` calls it only for
a request carrying one of the policy's field names, so a request without them pays one
pass over its field names. The rules:

1. Only a trusted peer's headers count (`--forwarded-allow-ips`; a unix socket's peer is
   trusted, as in gunicorn). From any other peer they reach the application untouched,
   as HTTP_X_FORWARDED_FOR and so on, and change nothing else.
2. The client is the right-most untrusted address: X-Forwarded-For, and the `for=` of
   Forwarded's elements, are walked from the right (the entry the peer itself added),
   skipping trusted addresses, as Werkzeug's ProxyFix does with a count of proxies. When
   every address is trusted, the left-most is the client.
3. The walk stops at the client's hop, N places from the right: the proxy that added that
   entry is the one the client connected to, and it is the one that knew the client's
   scheme and host. Forwarded carries them in the same element (`proto=`, `host=`); of a
   comma-separated X-Forwarded-Proto, -Host, -Port or -Prefix the value N places from the
   right is taken, or the left-most of a shorter list (a proxy that set the header rather
   than appending to it). Without X-Forwarded-For, N is 1.
4. Each fact (client address, scheme, host, port, prefix) is taken only when every header
   stating it gives a well-formed value there and all of them agree; otherwise that fact
   stays as the connection gave it, and the others are still taken. So a Forwarded header
   that disagrees with X-Forwarded-For leaves REMOTE_ADDR the peer's: a client could add
   either one behind a proxy that manages only the other. gunicorn answers 400 to
   disagreeing scheme headers; corral never answers an error for forwarded values.

What changes: REMOTE_ADDR, with REMOTE_PORT when the address came with a port (removed
otherwise: the peer's port belongs to another host); `wsgi.url_scheme` ("http" or
"https"); HTTP_HOST and SERVER_NAME, with SERVER_PORT when the host has a port; SERVER_PORT
from X-Forwarded-Port, which also replaces the port in HTTP_HOST (Werkzeug's ProxyFix
does both); SCRIPT_NAME from X-Forwarded-Prefix, percent-decoded as PATH_INFO is, without
a trailing "/", replacing --root-path's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote_to_bytes

from corral.http.trusted_addresses import IPAddress, TrustedAddresses, parse_ip

_ADDRESS_FIELD = "x-forwarded-for"
_HOST_FIELD = "x-forwarded-host"
_PORT_FIELD = "x-forwarded-port"
_PREFIX_FIELD = "x-forwarded-prefix"
_FORWARDED_FIELD = "forwarded"
# More proxies than any real chain has; beyond this many trusted entries a list is not
# read, so that `*` cannot make each request walk thousands of addresses.
_MAX_HOPS = 32

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
# RFC 7239 section 4: forwarded-pair = token "=" value; value = token / quoted-string.
_PAIR = re.compile(rf"({_TOKEN})=({_TOKEN}|{_QUOTED})")
_ESCAPE = re.compile(r"\\(.)")
# A host as a proxy may report it: a name or an address, then an optional port. Stricter
# than RFC 3986's reg-name, since the application builds URLs from it.
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::([0-9]{1,5}))?")
_PORT = re.compile(r"[0-9]{1,5}")
_PREFIX = re.compile(r"/[A-Za-z0-9._~!$&'()*+;=:@%/-]*")

T = TypeVar("T")


class _Unreadable:
    """A header states a fact, but not in a form corral can read."""

    __slots__ = ()


_UNREADABLE = _Unreadable()
# A client: its address in canonical text form, and its port if one was given.
Client = tuple[str, int | None]
_Node = tuple[str, int | None, IPAddress]
# Addresses as proxies wrote them, and what they are: the same proxies and clients come
# back, and parsing one costs a microsecond or two. Bounded, so that a client inventing
# addresses cannot grow it without end.
_NODES: dict[tuple[str, bool], _Node | _Unreadable] = {}
_MAX_REMEMBERED_NODES = 4096


@dataclass(frozen=True)
class ForwardedHeaders:
    """Whose forwarded headers count, and which scheme headers mean https.

    `secure_scheme_headers` are (wire name in lower case, the value meaning https); any
    other value of such a header means http, as in gunicorn. `names` are every field
    name that can change the environ.
    """

    trusted: TrustedAddresses
    secure_scheme_headers: tuple[tuple[str, str], ...]
    names: frozenset[str]

    @classmethod
    def from_settings(
        cls, allow_ips: Iterable[str], secure_scheme_headers: Mapping[str, str]
    ) -> ForwardedHeaders:
        """From gunicorn's `forwarded_allow_ips` (addresses, CIDR networks or "*"; a
        ValueError names a bad one) and `secure_scheme_headers` ({"X-FORWARDED-PROTO":
        "https", ...}, names in any case, values compared exactly)."""
        scheme_headers = tuple(
            (name.lower(), value) for name, value in secure_scheme_headers.items()
        )
        names = {_ADDRESS_FIELD, _HOST_FIELD, _PORT_FIELD, _PREFIX_FIELD, _FORWARDED_FIELD}
        names.update(name for name, _ in scheme_headers)
        return cls(TrustedAddresses(allow_ips), scheme_headers, frozenset(names))


def apply_forwarded(
    environ: dict[str, Any],
    fields: Mapping[str, str],
    peer: tuple[str, int] | str,
    policy: ForwardedHeaders,
) -> None:
    """Rewrite `environ` (already built from the request) by what the proxy headers among
    `fields` (wire names, lower case) say, if `peer` is trusted; see the module's rules.
    Never raises for any field value."""
    if not policy.trusted.trusts(peer):
        return
    trusted = policy.trusted
    clients: list[Client | _Unreadable] = []
    schemes: list[str | _Unreadable] = []
    hosts: list[str | _Unreadable] = []
    hop = 1
    addresses = fields.get(_ADDRESS_FIELD)
    if addresses is not None:
        nodes: list[str | None] = [node.strip() for node in addresses.split(",")]
        hop, client = _walk(nodes, trusted, bracketless_ipv6=True)
        if client is not None:
            clients.append(client)
    for name, secure_value in policy.secure_scheme_headers:
        value = fields.get(name)
        if value is not None:
            picked = _at_hop(value, hop)
            if isinstance(picked, str):
                schemes.append("https" if picked == secure_value else "http")
            else:
                schemes.append(picked)
    value = fields.get(_HOST_FIELD)
    if value is not None:
        hosts.append(_read(_at_hop(value, hop), _host))
    forwarded = fields.get(_FORWARDED_FIELD)
    if forwarded is not None:
        elements = _parse_forwarded(forwarded)
        if elements is None:
            clients.append(_UNREADABLE)
            schemes.append(_UNREADABLE)
            hosts.append(_UNREADABLE)
        else:
            depth, client = _walk(
                [element.get("for") for element in elements], trusted, bracketless_ipv6=False
            )
            if client is not None:
                clients.append(client)
            element = elements[-depth]
            if "proto" in element:
                schemes.append(_read(element["proto"], _scheme))
            if "host" in element:
                hosts.append(_read(element["host"], _host))

    if clients:
        _apply_client(environ, clients)
    scheme = _agreed(schemes)
    if scheme is not None:
        environ["wsgi.url_scheme"] = scheme
    host = _agreed(hosts)
    if host is not None:
        environ["HTTP_HOST"] = host
        name, port_in_host = _split_host(host)
        environ["SERVER_NAME"] = name
        if port_in_host:
            environ["SERVER_PORT"] = port_in_host
    value = fields.get(_PORT_FIELD)
    if value is not None:
        port = _read(_at_hop(value, hop), _port)
        if isinstance(port, str):
            environ["SERVER_PORT"] = port
            http_host = environ.get("HTTP_HOST")
            if http_host:
                environ["HTTP_HOST"] = f"{_split_host(http_host)[0]}:{port}"
    value = fields.get(_PREFIX_FIELD)
    if value is not None:
        prefix = _read(_at_hop(value, hop), _prefix)
        if isinstance(prefix, str):
            environ["SCRIPT_NAME"] = prefix


def _walk(
    nodes: list[str | None], trusted: TrustedAddresses, bracketless_ipv6: bool
) -> tuple[int, Client | _Unreadable | None]:
    """(N, the client) from the addresses proxies added, the earliest first: N counts
    from the right to the client's entry. The client is None when that entry states no
    address (a Forwarded element without `for=`)."""
    depth = 0
    node: _Node | _Unreadable | None = None
    for text in reversed(nodes):
        depth += 1
        if text is None:
            return depth, None
        node = _NODES.get((text, bracketless_ipv6))
        if node is None:
            node = _node(text, bracketless_ipv6)
            if len(_NODES) < _MAX_REMEMBERED_NODES:
                _NODES[(text, bracketless_ipv6)] = node
        if isinstance(node, _Unreadable) or not trusted.holds(node[2]):
            break
        if depth == _MAX_HOPS and depth < len(nodes):
            return depth, _UNREADABLE
    if isinstance(node, _Unreadable) or node is None:
        return depth, node
    return depth, node[:2]


def _node(text: str, bracketless_ipv6: bool) -> _Node | _Unreadable:
    """An address with an optional port: `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]`,
    `[2001:db8::1]:4711`, and in X-Forwarded-For a bare `2001:db8::1`. RFC 7239's
    "unknown" and obfuscated identifiers (`_hidden`) name no address: unreadable."""
    port_text: str | None = None
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket:
            return _UNREADABLE
        if rest:
            if not rest.startswith(":"):
                return _UNREADABLE
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    elif ":" in text and not bracketless_ipv6:
        # RFC 7239 section 6: an IPv6 node is bracketed (and quoted).
        return _UNREADABLE
    else:
        host = text
    address = parse_ip(host)
    if address is None or (text.startswith("[") and address.version != 6):
        return _UNREADABLE
    port: int | None = None
    if port_text is not None and not port_text.startswith("_"):
        # An obfuscated port (RFC 7239 section 6.3) says nothing; a bad one is bad.
        read = _port(port_text)
        if read is None:
            return _UNREADABLE
        port = int(read)
    return str(address), port, address


def _apply_client(environ: dict[str, Any], clients: list[Client | _Unreadable]) -> None:
    readable = [client for client in clients if not isinstance(client, _Unreadable)]
    if len(readable) < len(clients) or len({address for address, _ in readable}) != 1:
        return
    ports = {port for _, port in readable if port is not None}
    environ["REMOTE_ADDR"] = readable[0][0]
    if len(ports) == 1:
        environ["REMOTE_PORT"] = str(ports.pop())
    else:
        environ.pop("REMOTE_PORT", None)


def _agreed(claims: list[T | _Unreadable]) -> T | None:
    """The one value every claim states, or None when there is none, or a claim is
    unreadable, or they differ."""
    if not claims:
        return None
    first = claims[0]
    if isinstance(first, _Unreadable):
        return None
    for claim in claims:
        if isinstance(claim, _Unreadable) or claim != first:
            return None
    return first


def _at_hop(value: str, hop: int) -> str | _Unreadable:
    """The comma-separated value `hop` places from the right, or the left-most."""
    values = value.split(",")
    picked = values[-min(hop, len(values))].strip()
    return picked or _UNREADABLE


def _read(text: str | _Unreadable, reader: Callable[[str], str | None]) -> str | _Unreadable:
    if isinstance(text, _Unreadable):
        return text
    value = reader(text)
    return _UNREADABLE if value is None else value


def _scheme(text: str) -> str | None:
    lowered = text.lower()
    return lowered if lowered in ("http", "https") else None


def _host(text: str) -> str | None:
    match = _HOST.fullmatch(text)
    if match is None:
        return None
    name, port = match.groups()
    if name.startswith("[") and parse_ip(name[1:-1]) is None:
        return None
    if port is not None and _port(port) is None:
        return None
    return text


def _port(text: str) -> str | None:
    if _PORT.fullmatch(text) is None or not 0 < int(text) <= 65535:
        return None
    return str(int(text))


def _prefix(text: str) -> str | None:
    if _PREFIX.fullmatch(text) is None:
        return None
    if "%" in text:
        text = unquote_to_bytes(text).decode("latin-1")
    return text.rstrip("/")


def _split_host(host: str) -> tuple[str, str]:
    """(name, port) of a Host value; the port is "" when there is none."""
    if host.endswith("]") or ":" not in host:
        return host, ""
    name, _, port = host.rpartition(":")
    return name, port


def _parse_forwarded(value: str) -> list[dict[str, str]] | None:
    """Forwarded's elements, each {parameter in lower case: value unquoted}, or None
    when the value does not follow RFC 7239 section 4 (whitespace around "," and ";" is
    allowed) or an element names a parameter twice."""
    elements: list[dict[str, str]] = []
    element: dict[str, str] = {}
    position = 0
    end = len(value)
    while True:
        position = _skip_space(value, position)
        if position < end and value[position] not in ",;":
            pair = _PAIR.match(value, position)
            if pair is None:
                return None
            name, text = pair.group(1).lower(), pair.group(2)
            if name in element:
                # Section 4: "each parameter MUST NOT occur more than once per element".
                return None
            if text.startswith('"'):
                text = _ESCAPE.sub(r"\1", text[1:-1])
            element[name] = text
            position = _skip_space(value, pair.end())
        if position >= end:
            elements.append(element)
            return elements
        separator = value[position]
        if separator == ",":
            elements.append(element)
            element = {}
        elif separator != ";":
            return None
        position += 1


def _skip_space(value: str, position: int) -> int:
    while position < len(value) and value[position] in " \t":
        position += 1
    return position
