"""What a proxy's X-Forwarded-* and Forwarded (RFC 7239) headers do to the environ, by
whom they come from; requests parsed from bytes and built into an environ as served."""

from __future__ import annotations

import string
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.config import SETTINGS_BY_NAME
from corral.http.parser import HeadLimits, RequestHead, parse_head
from corral.wsgi.environ import base_environ, build_environ
from corral.wsgi.forwarded import ForwardedHeaders, apply_forwarded
from tests.unit.test_environ import unread_body

BASE = base_environ("127.0.0.1", "8000", "http", "", False, False)
GUNICORN_SCHEME_HEADERS = SETTINGS_BY_NAME["secure_scheme_headers"].default
POLICY = ForwardedHeaders.from_settings(
    ["127.0.0.1", "::1", "10.0.0.0/8", "2001:db8:ffff::/48"], GUNICORN_SCHEME_HEADERS
)
PROXY = ("10.0.0.2", 40000)
STRANGER = ("203.0.113.66", 40000)
# What the connection alone gives: the keys forwarded headers may change.
UNCHANGED = {
    "REMOTE_ADDR": "10.0.0.2",
    "REMOTE_PORT": "40000",
    "wsgi.url_scheme": "http",
    "HTTP_HOST": "backend:8000",
    "SERVER_NAME": "127.0.0.1",
    "SERVER_PORT": "8000",
    "SCRIPT_NAME": "",
}


def environ_of(
    *field_lines: str,
    peer: tuple[str, int] | str = PROXY,
    policy: ForwardedHeaders | None = POLICY,
    target: str = "/x",
) -> dict[str, Any]:
    lines = [f"GET {target} HTTP/1.1", "Host: backend:8000", *field_lines]
    parsed = parse_head("".join(f"{line}\r\n" for line in lines).encode() + b"\r\n", HeadLimits())
    assert parsed is not None
    head: RequestHead = parsed[0]
    body = unread_body(head)
    environ = build_environ(head, body, BASE, peer, policy)
    # The one key that differs between two environs of the same request.
    assert environ.pop("wsgi.input") is body
    return environ


def changed(*field_lines: str, peer: tuple[str, int] | str = PROXY) -> dict[str, Any]:
    """The forwarded keys that differ from what the connection alone gives."""
    environ = environ_of(*field_lines, peer=peer)
    expected = dict(UNCHANGED)
    if not isinstance(peer, tuple):
        expected["REMOTE_ADDR"] = peer
        del expected["REMOTE_PORT"]
    else:
        expected["REMOTE_ADDR"], expected["REMOTE_PORT"] = peer[0], str(peer[1])
    return {
        key: environ.get(key, "<removed>")
        for key in UNCHANGED
        if environ.get(key, "<removed>") != expected.get(key, "<removed>")
    }


EVERY_HEADER = (
    "X-Forwarded-For: 198.51.100.9",
    "X-Forwarded-Proto: https",
    "X-Forwarded-Host: example.com",
    "X-Forwarded-Port: 443",
    "X-Forwarded-Prefix: /app",
    "X-Forwarded-Ssl: on",
    'Forwarded: for=198.51.100.9;proto=https;host="example.com"',
)


def test_an_untrusted_peer_changes_nothing_with_any_forwarded_header() -> None:
    for line in EVERY_HEADER:
        assert changed(line, peer=STRANGER) == {}, line
    assert changed(*EVERY_HEADER, peer=STRANGER) == {}
    # The headers themselves still reach the application.
    environ = environ_of(*EVERY_HEADER, peer=STRANGER)
    assert environ["HTTP_X_FORWARDED_FOR"] == "198.51.100.9"
    assert environ["HTTP_FORWARDED"].startswith("for=198.51.100.9")


def test_a_trusted_peer_sets_every_fact() -> None:
    assert changed(*EVERY_HEADER) == {
        "REMOTE_ADDR": "198.51.100.9",
        "REMOTE_PORT": "<removed>",
        "wsgi.url_scheme": "https",
        "HTTP_HOST": "example.com:443",
        "SERVER_NAME": "example.com",
        "SERVER_PORT": "443",
        "SCRIPT_NAME": "/app",
    }


def test_without_a_policy_nothing_is_read() -> None:
    environ = environ_of(*EVERY_HEADER, policy=None)
    assert {key: environ.get(key) for key in UNCHANGED} == UNCHANGED


def test_a_request_without_proxy_headers_gets_the_same_environ_with_a_policy() -> None:
    lines = ("Accept: */*", "User-Agent: test", "X-Request-Id: 7")
    assert environ_of(*lines) == environ_of(*lines, policy=None)


# The client's address: the right-most untrusted one.


def test_the_right_most_untrusted_address_is_the_client() -> None:
    # The client forged the first two; the proxies 10.0.0.3 and 10.0.0.2 (the peer)
    # appended the rest.
    line = "X-Forwarded-For: 6.6.6.6, 10.9.9.9, 198.51.100.9, 10.0.0.3"
    assert changed(line)["REMOTE_ADDR"] == "198.51.100.9"
    assert changed("X-Forwarded-For: 198.51.100.9,10.0.0.3")["REMOTE_ADDR"] == "198.51.100.9"


def test_when_every_address_is_trusted_the_left_most_is_the_client() -> None:
    assert changed("X-Forwarded-For: 10.1.1.1, 10.0.0.3")["REMOTE_ADDR"] == "10.1.1.1"


def test_repeated_x_forwarded_for_lines_are_one_list() -> None:
    lines = ("X-Forwarded-For: 6.6.6.6", "X-Forwarded-For: 198.51.100.9")
    assert changed(*lines)["REMOTE_ADDR"] == "198.51.100.9"


def test_networks_and_addresses_of_both_families_are_trusted() -> None:
    assert changed("X-Forwarded-For: 198.51.100.9", peer=("::1", 1))["REMOTE_ADDR"] == (
        "198.51.100.9"
    )
    v6 = changed("X-Forwarded-For: 2001:db8::9, 2001:db8:ffff::1", peer=("10.200.0.1", 1))
    assert v6["REMOTE_ADDR"] == "2001:db8::9"
    # A trusted address reached as an IPv4-mapped IPv6 address is still trusted.
    mapped = changed("X-Forwarded-For: 198.51.100.9", peer=("::ffff:10.0.0.2", 1))
    assert mapped["REMOTE_ADDR"] == "198.51.100.9"
    assert changed("X-Forwarded-For: 198.51.100.9", peer=("11.0.0.1", 1)) == {}


def test_star_trusts_every_peer() -> None:
    anyone = ForwardedHeaders.from_settings(["*"], GUNICORN_SCHEME_HEADERS)
    environ = environ_of("X-Forwarded-For: 198.51.100.9", peer=STRANGER, policy=anyone)
    assert environ["REMOTE_ADDR"] == "198.51.100.9"


def test_nobody_is_trusted_with_an_empty_list_but_a_unix_socket_peer_is() -> None:
    nobody = ForwardedHeaders.from_settings([], GUNICORN_SCHEME_HEADERS)
    assert environ_of("X-Forwarded-For: 198.51.100.9", policy=nobody)["REMOTE_ADDR"] == ("10.0.0.2")
    unix = environ_of("X-Forwarded-For: 198.51.100.9", peer="", policy=nobody)
    assert unix["REMOTE_ADDR"] == "198.51.100.9"


def test_address_forms_and_ports() -> None:
    assert changed("X-Forwarded-For: 198.51.100.9:4711") == {
        "REMOTE_ADDR": "198.51.100.9",
        "REMOTE_PORT": "4711",
    }
    assert changed("X-Forwarded-For: [2001:db8::9]:4711") == {
        "REMOTE_ADDR": "2001:db8::9",
        "REMOTE_PORT": "4711",
    }
    assert changed("X-Forwarded-For: 2001:DB8:0:0::9")["REMOTE_ADDR"] == "2001:db8::9"
    assert changed("X-Forwarded-For: [2001:db8::9]")["REMOTE_ADDR"] == "2001:db8::9"


@pytest.mark.parametrize(
    "value",
    [
        "unknown",
        "",
        "198.51.100.9, ",
        "198.51.100.999",
        "198.051.100.9",
        "example.com",
        "fe80::1%eth0",
        "[198.51.100.9]",
        "[2001:db8::9",
        "198.51.100.9:99999",
        "198.51.100.9:x",
        "[2001:db8::9]x",
    ],
)
def test_an_unreadable_client_address_leaves_the_peers(value: str) -> None:
    assert "REMOTE_ADDR" not in changed(f"X-Forwarded-For: {value}")


def test_what_the_client_forged_left_of_its_own_address_is_never_read() -> None:
    line = "X-Forwarded-For: ;;garbage, [[, 198.51.100.9"
    assert changed(line)["REMOTE_ADDR"] == "198.51.100.9"


def test_a_list_longer_than_any_chain_of_trusted_proxies_is_not_read() -> None:
    anyone = ForwardedHeaders.from_settings(["*"], GUNICORN_SCHEME_HEADERS)
    addresses = ", ".join(f"10.0.{n // 250}.{n % 250 + 1}" for n in range(100))
    environ = environ_of(f"X-Forwarded-For: {addresses}", peer=STRANGER, policy=anyone)
    assert environ["REMOTE_ADDR"] == STRANGER[0]
    short = ", ".join(f"10.0.0.{n + 1}" for n in range(32))
    environ = environ_of(f"X-Forwarded-For: {short}", peer=STRANGER, policy=anyone)
    assert environ["REMOTE_ADDR"] == "10.0.0.1"


# The scheme, host, port and prefix: the values at the client's hop.


def test_gunicorn_scheme_headers() -> None:
    assert changed("X-Forwarded-Proto: https") == {"wsgi.url_scheme": "https"}
    assert changed("X-Forwarded-Ssl: on") == {"wsgi.url_scheme": "https"}
    assert changed("X-Forwarded-Protocol: ssl") == {"wsgi.url_scheme": "https"}
    # Any other value of such a header means http; gunicorn compares values exactly.
    https = ForwardedHeaders.from_settings(["*"], GUNICORN_SCHEME_HEADERS)
    environ = dict(BASE, **{"wsgi.url_scheme": "https"})
    apply_forwarded(environ, {"x-forwarded-proto": "HTTPS"}, PROXY, https)
    assert environ["wsgi.url_scheme"] == "http"


def test_secure_scheme_headers_replace_the_default_table() -> None:
    own = ForwardedHeaders.from_settings(["10.0.0.0/8"], {"X-Scheme": "https"})
    assert environ_of("X-Scheme: https", policy=own)["wsgi.url_scheme"] == "https"
    assert environ_of("X-Forwarded-Proto: https", policy=own)["wsgi.url_scheme"] == "http"


def test_values_are_taken_at_the_client_hop() -> None:
    # Two trusted proxies: 10.0.0.3 (next to the client) and the peer, 10.0.0.2, each
    # appending. The one next to the client knew its scheme and host.
    assert changed(
        "X-Forwarded-For: 198.51.100.9, 10.0.0.3",
        "X-Forwarded-Proto: http, https, http",
        "X-Forwarded-Host: forged.example, example.com, backend.internal",
        "X-Forwarded-Port: 1, 443, 80",
        "X-Forwarded-Prefix: /forged, /app, /internal",
    ) == {
        "REMOTE_ADDR": "198.51.100.9",
        "REMOTE_PORT": "<removed>",
        "wsgi.url_scheme": "https",
        "HTTP_HOST": "example.com:443",
        "SERVER_NAME": "example.com",
        "SERVER_PORT": "443",
        "SCRIPT_NAME": "/app",
    }


def test_a_header_set_rather_than_appended_gives_its_one_value() -> None:
    lines = ("X-Forwarded-For: 198.51.100.9, 10.0.0.3", "X-Forwarded-Proto: https")
    assert changed(*lines)["wsgi.url_scheme"] == "https"
    # One proxy: the value the peer appended, whatever the client sent before it.
    assert changed("X-Forwarded-Proto: https, http") == {}


def test_host_and_port() -> None:
    assert changed("X-Forwarded-Host: example.com:8443") == {
        "HTTP_HOST": "example.com:8443",
        "SERVER_NAME": "example.com",
        "SERVER_PORT": "8443",
    }
    assert changed("X-Forwarded-Host: [2001:db8::1]") == {
        "HTTP_HOST": "[2001:db8::1]",
        "SERVER_NAME": "[2001:db8::1]",
    }
    # X-Forwarded-Port replaces the port in the Host the client sent, as ProxyFix does.
    assert changed("X-Forwarded-Port: 8443") == {
        "HTTP_HOST": "backend:8443",
        "SERVER_PORT": "8443",
    }


@pytest.mark.parametrize(
    "line",
    [
        "X-Forwarded-Host: evil.example/path",
        "X-Forwarded-Host: evil.example@other",
        "X-Forwarded-Host: a b",
        "X-Forwarded-Host: example.com:99999",
        "X-Forwarded-Host: example.com:",
        "X-Forwarded-Host: [not-ipv6]",
        "X-Forwarded-Host: ,",
        "X-Forwarded-Port: 0",
        "X-Forwarded-Port: 65536",
        "X-Forwarded-Port: https",
        "X-Forwarded-Prefix: app",
        "X-Forwarded-Prefix: /a b",
        "X-Forwarded-Prefix: /a?b",
        "X-Forwarded-Prefix: /a#b",
        "X-Forwarded-Proto: ",
        "Forwarded: proto=ftp",
        "Forwarded: host=evil.example/x",
    ],
)
def test_malformed_values_are_ignored(line: str) -> None:
    assert changed(line) == {}


def test_prefix_is_decoded_as_path_info_is_and_loses_its_trailing_slash() -> None:
    assert changed("X-Forwarded-Prefix: /my%20app/") == {"SCRIPT_NAME": "/my app"}
    assert changed("X-Forwarded-Prefix: /") == {}
    assert changed("X-Forwarded-Prefix: /a/b") == {"SCRIPT_NAME": "/a/b"}


# RFC 7239 Forwarded.


def test_forwarded_elements_are_walked_like_x_forwarded_for() -> None:
    assert changed(
        "Forwarded: for=6.6.6.6;proto=http, "
        'for="[2001:db8::9]:4711";proto=https;host=example.com, '
        "for=10.0.0.3;proto=http;host=backend.internal"
    ) == {
        "REMOTE_ADDR": "2001:db8::9",
        "REMOTE_PORT": "4711",
        "wsgi.url_scheme": "https",
        "HTTP_HOST": "example.com",
        "SERVER_NAME": "example.com",
    }


def test_forwarded_syntax_details() -> None:
    # Parameter names in any case, whitespace around separators, quoted values with
    # escapes, empty pairs.
    assert changed('Forwarded: For="198.51.100.9" ; PROTO=HTTPS;;by=_proxy') == {
        "REMOTE_ADDR": "198.51.100.9",
        "REMOTE_PORT": "<removed>",
        "wsgi.url_scheme": "https",
    }
    assert changed('Forwarded: for="198.51.100.\\9"')["REMOTE_ADDR"] == "198.51.100.9"
    assert changed('Forwarded: for="198.51.100.9:4711"')["REMOTE_PORT"] == "4711"
    # An element that names no client still gives its scheme.
    assert changed("Forwarded: proto=https") == {"wsgi.url_scheme": "https"}


@pytest.mark.parametrize(
    "for_value",
    [
        "unknown",
        "_hidden",
        '"_hidden:_port"',
        '"[2001:db8::9"',
        '"2001:db8::9"',
        '"198.51.100.9:_x:1"',
        '"[2001:db8::9]:"',
    ],
)
def test_forwarded_without_a_readable_client_keeps_the_peer_but_gives_the_rest(
    for_value: str,
) -> None:
    assert changed(f"Forwarded: for={for_value};proto=https") == {"wsgi.url_scheme": "https"}


def test_an_obfuscated_port_is_no_port() -> None:
    assert changed('Forwarded: for="198.51.100.9:_abc"') == {
        "REMOTE_ADDR": "198.51.100.9",
        "REMOTE_PORT": "<removed>",
    }


@pytest.mark.parametrize(
    "value",
    [
        'for="198.51.100.9',
        "for=198.51.100.9;for=6.6.6.6",
        "for 198.51.100.9",
        "for=[2001:db8::9]",
        "for=198.51.100.9:4711",
        "for=198.51.100.9 proto=https",
        "=198.51.100.9",
        "for=198.51.100.9;proto=https ,, host=a b",
    ],
)
def test_a_forwarded_header_that_does_not_parse_is_ignored(value: str) -> None:
    assert changed(f"Forwarded: {value}") == {}
    # And, since it states the client, scheme and host unreadably, so are those facts in
    # the X-Forwarded-* headers beside it.
    beside = ("X-Forwarded-For: 198.51.100.9", "X-Forwarded-Proto: https")
    assert changed(f"Forwarded: {value}", *beside) == {}


# Headers that disagree.


def test_disagreeing_headers_leave_their_fact_alone_and_give_the_others() -> None:
    assert changed("Forwarded: for=198.51.100.9", "X-Forwarded-For: 198.51.100.7") == {}
    assert changed(
        "Forwarded: for=198.51.100.9;proto=https",
        "X-Forwarded-For: 198.51.100.9",
        "X-Forwarded-Proto: http",
    ) == {"REMOTE_ADDR": "198.51.100.9", "REMOTE_PORT": "<removed>"}
    # gunicorn answers 400 here; corral serves the request with the listener's scheme.
    assert changed("X-Forwarded-Proto: https", "X-Forwarded-Ssl: off") == {}
    assert changed("X-Forwarded-Host: a.example", "Forwarded: host=b.example") == {}


def test_agreeing_headers_are_applied() -> None:
    assert changed(
        'Forwarded: for="198.51.100.9:4711";proto=https;host=example.com',
        "X-Forwarded-For: 198.51.100.9",
        "X-Forwarded-Proto: https",
        "X-Forwarded-Ssl: on",
        "X-Forwarded-Host: example.com",
    ) == {
        "REMOTE_ADDR": "198.51.100.9",
        "REMOTE_PORT": "4711",
        "wsgi.url_scheme": "https",
        "HTTP_HOST": "example.com",
        "SERVER_NAME": "example.com",
    }


FIELD_VALUE = st.text(alphabet=string.printable.strip() + " ", max_size=60).map(str.strip)
NAMES = sorted(POLICY.names)


@given(st.dictionaries(st.sampled_from(NAMES), FIELD_VALUE, min_size=1))
def test_any_values_from_a_trusted_peer_never_raise(fields: dict[str, str]) -> None:
    environ = dict(BASE, REMOTE_ADDR=PROXY[0], REMOTE_PORT="1", HTTP_HOST="backend")
    apply_forwarded(environ, fields, PROXY, POLICY)
    assert environ["wsgi.url_scheme"] in ("http", "https")
    assert isinstance(environ["REMOTE_ADDR"], str)
