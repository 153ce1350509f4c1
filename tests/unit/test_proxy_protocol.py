"""The PROXY protocol parser (HAProxy's specification, versions 1 and 2), fed whole, in
every prefix, and with the first request's bytes behind the header."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.http.proxy_protocol import (
    V2_SIGNATURE,
    Incomplete,
    ProxyHeader,
    ProxyHeaderError,
    crc32c,
    parse_proxy_header,
)

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"

LOCAL, PROXY = 0x20, 0x21
TCP4, TCP6, UDP4, UNIX_STREAM, UNSPEC = 0x11, 0x21, 0x12, 0x31, 0x00
ALPN, AUTHORITY, CRC32C, NOOP, UNIQUE_ID, SSL = 0x01, 0x02, 0x03, 0x04, 0x05, 0x20


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(value)) + value


def v2(
    command: int = PROXY,
    family: int = TCP4,
    source: tuple[str, int] = ("203.0.113.7", 51000),
    destination: tuple[str, int] = ("192.0.2.1", 443),
    tlvs: bytes = b"",
    block: bytes | None = None,
) -> bytes:
    """A version 2 header, written from section 2.2 independently of the parser."""
    if block is None:
        if family >> 4 in (1, 2):
            block = (
                ipaddress.ip_address(source[0]).packed
                + ipaddress.ip_address(destination[0]).packed
                + struct.pack("!HH", source[1], destination[1])
            )
        elif family >> 4 == 3:
            block = b"/run/client".ljust(108, b"\0") + b"/run/server".ljust(108, b"\0")
        else:
            block = b""
        block += tlvs
    return V2_SIGNATURE + bytes([command, family]) + struct.pack("!H", len(block)) + block


def with_crc32c(before: bytes) -> bytes:
    """A TCP over IPv4 header whose TLVs are `before`, then a correct CRC32C TLV: the
    checksum of the whole header with its own 4 bytes zeroed (section 2.2.3)."""
    zeroed = v2(tlvs=before + tlv(CRC32C, bytes(4)))
    checksum = crc32c(zeroed)
    return zeroed[:-4] + struct.pack("!I", checksum)


def parse_every_way(header: bytes) -> ProxyHeader:
    """Parse a complete header whole, with a request behind it, and each shorter prefix,
    which must ask for more without claiming a byte past the header's end."""
    whole = parse_proxy_header(header)
    assert isinstance(whole, ProxyHeader)
    assert whole.size == len(header)
    assert parse_proxy_header(header + REQUEST) == whole
    for end in range(len(header)):
        partial = parse_proxy_header(header[:end])
        assert isinstance(partial, Incomplete), end
        assert partial.limit > end
        if header.startswith(V2_SIGNATURE) and end > 0:
            # Once its first byte has come, reading up to `limit` never passes the end
            # of a binary header.
            assert partial.limit <= len(header)
        else:
            assert partial.limit == 107
    return whole


def refused(data: bytes) -> str:
    with pytest.raises(ProxyHeaderError) as error:
        parse_proxy_header(data)
    return str(error.value)


# Version 1.


def test_v1_tcp4() -> None:
    header = parse_every_way(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n")
    assert header.version == 1
    assert header.source == ("192.168.0.1", 56324)
    assert header.destination == ("192.168.0.11", 443)


def test_v1_tcp6_canonical_and_longest_form() -> None:
    header = parse_every_way(b"PROXY TCP6 2001:DB8::1 ::1 65535 0\r\n")
    assert header.source == ("2001:db8::1", 65535)
    assert header.destination == ("::1", 0)
    longest = "ffff:" * 7 + "ffff"
    line = f"PROXY TCP6 {longest} {longest} 65535 65535\r\n".encode()
    assert len(line) == 104
    assert parse_every_way(line).source == ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535)


def test_v1_unknown_keeps_the_connections_own_peer_and_ignores_the_rest() -> None:
    assert parse_every_way(b"PROXY UNKNOWN\r\n").source is None
    longest = "ffff:" * 7 + "ffff"
    line = f"PROXY UNKNOWN {longest} {longest} 65535 65535\r\n".encode()
    assert len(line) == 107
    header = parse_every_way(line)
    assert (header.source, header.destination, header.size) == (None, None, 107)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"GET / HTTP/1.1\r\n", "not a PROXY protocol header"),
        (b"PROXY\r\n", "not a PROXY protocol header"),
        (b"proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n", "not a PROXY protocol header"),
        (b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n", "unknown PROXY protocol family"),
        (b"PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n", "unknown PROXY protocol family"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n", "6 fields"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n", "6 fields"),
        (b"PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n", "6 fields"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 \r\n", "6 fields"),
        (b"PROXY TCP4 192.168.0.1 192.16...\r\n", "6 fields"),
        (b"PROXY TCP4 not-an-ip 192.168.0.11 56324 443\r\n", "not an IPv4 address"),
        (b"PROXY TCP4 192.168.000.1 192.168.0.11 1 2\r\n", "not an IPv4 address"),
        (b"PROXY TCP4 ::1 192.168.0.11 1 2\r\n", "not an IPv4 address"),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "not an IPv6 address"),
        (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "not an IPv6 address"),
        (b"PROXY TCP4 192.168.0.1 192.168.0.11 65iii 100000\r\n", "not a port number"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n", "not a port number"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 080 2\r\n", "not a port number"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 +80 2\r\n", "not a port number"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 \xd9\xa1 2\r\n", "not ASCII"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n", "bare CR or LF"),
        (b"PROXY TCP4 1.2.3.4\r 1.2.3.4 1 2\r\n", "bare CR or LF"),
        (b"PROXY TCP4 1.2.3.4\n1.2.3.4 1 2\r\n", "bare CR or LF"),
    ],
)
def test_v1_malformed_lines_are_refused(line: bytes, why: str) -> None:
    assert why in refused(line)
    # With the next request behind it, the same verdict.
    assert why in refused(line + REQUEST)


def test_v1_refused_as_soon_as_the_bytes_cannot_start_a_header() -> None:
    assert "not a PROXY" in refused(b"GET")
    assert "not a PROXY" in refused(b"PROXX")
    assert "bare CR or LF" in refused(b"PROXY TCP4 1.2.3.4\n")
    assert "bare CR or LF" in refused(b"PROXY TCP4\r1")


def test_v1_without_crlf_in_107_bytes_is_refused_and_never_waits_longer() -> None:
    padding = b"PROXY UNKNOWN " + b"x" * 92
    assert len(padding) == 106
    assert parse_proxy_header(padding) == Incomplete(107)
    assert "no CRLF in the first 107 bytes" in refused(padding + b"x")
    # A CRLF that would make the line 108 bytes long comes too late.
    assert "no CRLF" in refused(padding + b"\r\n")
    assert "no CRLF" in refused(b"PROXY UNKNOWN " + b"x" * 4000)


# Version 2.


def test_v2_tcp4_and_tcp6() -> None:
    header = parse_every_way(v2())
    assert header.version == 2
    assert header.source == ("203.0.113.7", 51000)
    assert header.destination == ("192.0.2.1", 443)
    six = parse_every_way(v2(family=TCP6, source=("2001:db8::7", 1), destination=("::1", 2)))
    assert (six.source, six.destination) == (("2001:db8::7", 1), ("::1", 2))


def test_v2_from_the_gunicorn_corpus() -> None:
    # valid/pp_04.http: TCP over IPv4, 192.168.1.10:12345 to 192.168.1.1:443.
    data = bytes.fromhex("0d0a0d0a000d0a515549540a2111000cc0a8010ac0a80101303901bb")
    assert parse_every_way(data).source == ("192.168.1.10", 12345)


def test_v2_tlvs_are_returned_in_order() -> None:
    ssl_value = b"\x01" + bytes(4) + tlv(0x21, b"TLSv1.3") + tlv(0x22, b"client.example")
    tlvs = (
        tlv(ALPN, b"h2")
        + tlv(AUTHORITY, b"example.com")
        + tlv(NOOP, b"")
        + tlv(UNIQUE_ID, b"\x00" * 128)
        + tlv(SSL, ssl_value)
        + tlv(0xE0, b"custom")
    )
    header = parse_every_way(v2(tlvs=tlvs))
    assert header.source == ("203.0.113.7", 51000)
    assert header.tlvs == (
        (ALPN, b"h2"),
        (AUTHORITY, b"example.com"),
        (NOOP, b""),
        (UNIQUE_ID, b"\x00" * 128),
        (SSL, ssl_value),
        (0xE0, b"custom"),
    )


def test_v2_local_keeps_the_connections_own_peer_whatever_its_block_says() -> None:
    assert parse_every_way(v2(command=LOCAL, family=UNSPEC)).source is None
    # Section 2.2: the block "including the family" is discarded, its length honoured.
    with_addresses = v2(command=LOCAL, family=TCP4, tlvs=tlv(AUTHORITY, b"x"))
    assert parse_every_way(with_addresses) == ProxyHeader(2, len(with_addresses), None, None)
    odd_family = v2(command=LOCAL, family=0x45, block=b"\xff" * 7)
    assert parse_every_way(odd_family).source is None


def test_v2_families_other_than_tcp_keep_the_connections_own_peer() -> None:
    for family in (UNSPEC, 0x01, 0x10, UDP4, 0x20, UNIX_STREAM, 0x32):
        header = parse_every_way(v2(family=family))
        assert header.source is None, hex(family)
    for family in (0x20, 0x22):
        header = parse_every_way(v2(family=family, source=("::2", 1), destination=("::1", 2)))
        assert header.source is None, hex(family)
    # A unix address block is still checked and its TLVs read.
    unix = parse_every_way(v2(family=UNIX_STREAM, tlvs=tlv(AUTHORITY, b"a")))
    assert unix.tlvs == ((AUTHORITY, b"a"),)


def test_v2_crc32c_is_checked() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # RFC 3720 appendix B.4's check value.
    good = with_crc32c(tlv(AUTHORITY, b"example.com"))
    assert parse_every_way(good).source == ("203.0.113.7", 51000)
    broken = good[:-1] + bytes([good[-1] ^ 1])
    assert "CRC32C does not match" in refused(broken)
    changed = good.replace(b"example.com", b"example.org")
    assert "CRC32C does not match" in refused(changed)
    assert "CRC32C" in refused(v2(tlvs=tlv(CRC32C, b"\0\0\0")))
    twice = v2(tlvs=tlv(CRC32C, bytes(4)) + tlv(CRC32C, bytes(4)))
    assert "once" in refused(twice)


@pytest.mark.parametrize(
    ("header", "why"),
    [
        (V2_SIGNATURE + b"\x11\x11\x00\x0c" + bytes(12), "version 1, only 2"),
        (V2_SIGNATURE + b"\x31\x11\x00\x0c" + bytes(12), "version 3"),
        (V2_SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12), "unknown PROXY protocol command 2"),
        (V2_SIGNATURE + b"\x2f\x11\x00\x0c" + bytes(12), "command 15"),
        (v2(family=0x41, block=bytes(12)), "unknown PROXY protocol family"),
        (v2(family=0x13, block=bytes(12)), "unknown PROXY protocol family"),
        (v2(block=bytes(11)), "address block of 11 bytes, 12 needed"),
        (v2(family=TCP6, block=bytes(35)), "address block of 35 bytes, 36 needed"),
        (v2(family=UNIX_STREAM, block=bytes(215)), "215 bytes, 216 needed"),
        (v2(tlvs=b"\x01"), "TLV is cut short"),
        (v2(tlvs=b"\x01\x00"), "TLV is cut short"),
        (v2(tlvs=tlv(ALPN, b"h2") + b"\x04\x00"), "TLV is cut short"),
        (v2(tlvs=b"\x01\x00\x05h2"), "runs over"),
        (v2(tlvs=b"\x01\xff\xff"), "runs over"),
        (v2(tlvs=tlv(SSL, b"\x01\0\0\0")), "SSL TLV is cut short"),
        (v2(tlvs=tlv(SSL, b"\x01\0\0\0\0" + b"\x21\x00\x09TLS")), "runs over"),
        (v2(tlvs=tlv(SSL, b"\x01\0\0\0\0" + b"\x21")), "cut short"),
        (b"\r\n\r\n\x00\r\nQUIT\r" + bytes(8), "not a PROXY protocol header"),
        (b"\r\nGET / HTTP/1.1\r\n", "not a PROXY protocol header"),
    ],
)
def test_v2_malformed_headers_are_refused(header: bytes, why: str) -> None:
    assert why in refused(header)
    assert why in refused(header + REQUEST)


def test_v2_is_refused_from_its_13th_byte_when_its_version_is_wrong() -> None:
    assert "version 1" in refused(V2_SIGNATURE + b"\x11")
    assert isinstance(parse_proxy_header(V2_SIGNATURE + b"\x21\x11"), Incomplete)


def test_v2_length_bounds_the_header_and_the_wait() -> None:
    # The longest header the 16-bit length allows: 16 + 65535 bytes, all TLVs.
    value = bytes(65535 - 12 - 3)
    largest = v2(tlvs=tlv(NOOP, value))
    assert len(largest) == 16 + 65535
    assert parse_proxy_header(largest[:16]) == Incomplete(16 + 65535)
    assert parse_proxy_header(largest[:-1]) == Incomplete(16 + 65535)
    header = parse_proxy_header(largest + REQUEST)
    assert isinstance(header, ProxyHeader)
    assert header.size == 16 + 65535
    assert header.tlvs == ((NOOP, value),)


@given(st.binary(max_size=300))
def test_any_bytes_parse_wait_or_are_refused(data: bytes) -> None:
    for candidate in (data, b"PROXY " + data, V2_SIGNATURE + data, v2()[:16] + data):
        try:
            result = parse_proxy_header(candidate)
        except ProxyHeaderError:
            continue
        if isinstance(result, Incomplete):
            assert result.limit > len(candidate)
        else:
            assert 0 < result.size <= len(candidate)
