"""The PROXY protocol header a proxy sends before a connection's first byte, versions 1
and 2 (HAProxy's "The PROXY protocol" specification, 2020/03/05 revision), parsed from
bytes already received.

Nothing here reads a socket: `parse_proxy_header` takes the bytes received so far and
returns the parsed header, `Incomplete` when more bytes are needed, or raises
`ProxyHeaderError`, after which the connection must be closed (section 2.1: "any
sequence which does not exactly match the protocol must be discarded and cause the
receiver to abort the connection").

Every byte of an incomplete header belongs to the header, so a caller may take them off
the socket as they come and never reads past the header's end: a version 1 line ends at
its CRLF, which is never inside an incomplete one, and a version 2 header's length is
known from its 16th byte on.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

# Section 2.1: "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n".
V1_MAX_SIZE = 107
# Section 2.2: the signature, the version and command byte, the family and protocol
# byte, and the length of what follows, 16 bits big-endian.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED_SIZE = 16
_V1_START = b"PROXY "

# Version 2 address families (high nibble of the 14th byte) and the size of their
# address block: source and destination addresses, then source and destination ports.
_UNSPEC, _INET, _INET6, _UNIX = 0, 1, 2, 3
_ADDRESS_SIZE = {_INET: 12, _INET6: 36, _UNIX: 216}
# Transport protocols (low nibble): only a stream carries HTTP.
_TRANSPORT_UNSPEC, _STREAM, _DGRAM = 0, 1, 2
_LOCAL, _PROXY = 0, 1

# Section 2.2: TLV types this module looks inside.
PP2_TYPE_CRC32C = 0x03
PP2_TYPE_SSL = 0x20
_TLV_HEADER_SIZE = 3
# The SSL TLV's own fields before its sub-TLVs: client (1 byte) and verify (4 bytes).
_SSL_FIXED_SIZE = 5


class ProxyHeaderError(ValueError):
    """The bytes are not a valid PROXY protocol header; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class Incomplete:
    """The header has not all arrived. `limit` is the most bytes it can take in all,
    counting those given, as far as they tell: 107 for a version 1 line, 16 for a version
    2 header until its length has arrived, then 16 plus that length."""

    limit: int


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """One parsed header, `size` bytes long.

    `source` is the client's (address, port) as the proxy saw it, the address in
    canonical text form; None when the connection's own peer stands (the LOCAL command
    of a health check, UNKNOWN, or a family or protocol other than TCP over IPv4 or IPv6,
    which section 2.2 lets a receiver fall back from). `destination` is the address the
    client connected to, or None with it. `tlvs` are version 2's type-length-value
    vectors, (type, value) in the order sent; an SSL TLV's value is kept whole, its
    sub-TLVs checked but not split.
    """

    version: int
    size: int
    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    tlvs: tuple[tuple[int, bytes], ...] = ()


def parse_proxy_header(data: bytes) -> ProxyHeader | Incomplete:
    """Parse the PROXY protocol header at the start of `data`; bytes after it are left
    alone. Raises `ProxyHeaderError` as soon as `data` cannot start a valid header."""
    if data[:1] == b"\r":
        return _parse_v2(data)
    return _parse_v1(data)


def _parse_v1(data: bytes) -> ProxyHeader | Incomplete:
    if not data.startswith(_V1_START[: len(data)]):
        raise ProxyHeaderError("not a PROXY protocol header")
    end = data.find(b"\r\n", 0, V1_MAX_SIZE)
    if end < 0:
        # Section 2.1: a lone CR or LF never ends the line.
        line = data[:V1_MAX_SIZE]
        if b"\n" in line or b"\r" in line[:-1]:
            raise ProxyHeaderError("a PROXY line holds a bare CR or LF")
        if len(data) >= V1_MAX_SIZE:
            raise ProxyHeaderError(f"no CRLF in the first {V1_MAX_SIZE} bytes of a PROXY line")
        return Incomplete(V1_MAX_SIZE)
    line = data[:end]
    if b"\r" in line or b"\n" in line:
        raise ProxyHeaderError("a PROXY line holds a bare CR or LF")
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise ProxyHeaderError("a PROXY line holds bytes that are not ASCII") from None
    parts = text.split(" ")
    if parts[1] == "UNKNOWN":
        # Section 2.1: the rest of an UNKNOWN line is ignored, and the connection's own
        # endpoints are used.
        return ProxyHeader(1, end + 2, None, None)
    if parts[1] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError(f"unknown PROXY protocol family {parts[1][:10]!r}")
    if len(parts) != 6:
        raise ProxyHeaderError("a PROXY line needs 6 fields separated by single spaces")
    version = 4 if parts[1] == "TCP4" else 6
    source = (_v1_address(parts[2], version), _v1_port(parts[4]))
    destination = (_v1_address(parts[3], version), _v1_port(parts[5]))
    return ProxyHeader(1, end + 2, source, destination)


def _v1_address(text: str, version: int) -> str:
    # ipaddress refuses leading zeros in IPv4 (section 2.1 forbids them) and accepts
    # zone indexes in IPv6, which a proxy never sends.
    if "%" in text:
        raise ProxyHeaderError(f"{text[:45]!r} is not an IPv{version} address")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyHeaderError(f"{text[:45]!r} is not an IPv{version} address") from None
    if address.version != version:
        raise ProxyHeaderError(f"{text!r} is not an IPv{version} address")
    return str(address)


def _v1_port(text: str) -> int:
    # Section 2.1: decimal, 0 to 65535, no leading zeros.
    if not (text.isdigit() and text.isascii() and len(text) <= 5) or (
        len(text) > 1 and text[0] == "0"
    ):
        raise ProxyHeaderError(f"{text[:10]!r} is not a port number")
    port = int(text)
    if port > 65535:
        raise ProxyHeaderError(f"{text!r} is not a port number")
    return port


def _parse_v2(data: bytes) -> ProxyHeader | Incomplete:
    if not data.startswith(V2_SIGNATURE[: len(data)]):
        raise ProxyHeaderError("not a PROXY protocol header")
    if len(data) < V2_FIXED_SIZE:
        if len(data) > len(V2_SIGNATURE):
            _check_v2_command(data[12])
        return Incomplete(V2_FIXED_SIZE)
    command = _check_v2_command(data[12])
    size = V2_FIXED_SIZE + int.from_bytes(data[14:16], "big")
    if len(data) < size:
        return Incomplete(size)
    if command == _LOCAL:
        # A connection the proxy opened itself (a health check): its endpoints are the
        # connection's own, and the block "including the family" is skipped whole.
        return ProxyHeader(2, size, None, None)
    family, transport = data[13] >> 4, data[13] & 0x0F
    if family > _UNIX or transport > _DGRAM:
        # Section 2.2: other values "must be rejected as invalid by receivers".
        raise ProxyHeaderError(f"unknown PROXY protocol family and protocol {data[13]:#04x}")
    if family == _UNSPEC or transport == _TRANSPORT_UNSPEC:
        # "The receiver should ignore address information": the connection's own stands.
        return ProxyHeader(2, size, None, None)
    address_end = V2_FIXED_SIZE + _ADDRESS_SIZE[family]
    if size < address_end:
        raise ProxyHeaderError(
            f"a PROXY protocol address block of {size - V2_FIXED_SIZE} bytes, "
            f"{address_end - V2_FIXED_SIZE} needed"
        )
    tlvs = _parse_tlvs(data, address_end, size)
    if family == _UNIX or transport == _DGRAM:
        # Checked, but of no use for HTTP: section 2.2 lets a receiver fall back to the
        # connection's own endpoints for the families it does not support.
        return ProxyHeader(2, size, None, None, tlvs)
    source, destination = _v2_addresses(family, data[V2_FIXED_SIZE:address_end])
    return ProxyHeader(2, size, source, destination, tlvs)


def _check_v2_command(byte: int) -> int:
    if byte >> 4 != 2:
        raise ProxyHeaderError(f"PROXY protocol version {byte >> 4}, only 2 is binary")
    command = byte & 0x0F
    if command not in (_LOCAL, _PROXY):
        raise ProxyHeaderError(f"unknown PROXY protocol command {command}")
    return command


def _v2_addresses(family: int, block: bytes) -> tuple[tuple[str, int], tuple[str, int]]:
    width = 4 if family == _INET else 16
    source = ipaddress.ip_address(block[:width])
    destination = ipaddress.ip_address(block[width : 2 * width])
    ports = block[2 * width : 2 * width + 4]
    return (
        (str(source), int.from_bytes(ports[:2], "big")),
        (str(destination), int.from_bytes(ports[2:], "big")),
    )


def _parse_tlvs(header: bytes, start: int, end: int) -> tuple[tuple[int, bytes], ...]:
    """The TLVs filling `header[start:end]` exactly, with the CRC32C checked if one is
    sent. One running past the end is an error, as are 1 or 2 bytes left over (a TLV
    takes at least 3); their number is bounded by the header's length."""
    tlvs = []
    checksum_at = -1
    offset = start
    while offset < end:
        kind, value_start, value_end = _next_tlv(header, offset, end)
        value = header[value_start:value_end]
        if kind == PP2_TYPE_SSL:
            # Its sub-TLVs must fill it exactly, as the outer ones fill the header.
            if len(value) < _SSL_FIXED_SIZE:
                raise ProxyHeaderError("a PROXY protocol SSL TLV is cut short")
            offset = value_start + _SSL_FIXED_SIZE
            while offset < value_end:
                offset = _next_tlv(header, offset, value_end)[2]
        elif kind == PP2_TYPE_CRC32C:
            if checksum_at >= 0 or len(value) != 4:
                raise ProxyHeaderError("a PROXY protocol CRC32C TLV must come once, 4 bytes")
            checksum_at = value_start
        tlvs.append((kind, value))
        offset = value_end
    if checksum_at >= 0:
        # Section 2.2.3: computed over the whole header with the checksum's 4 bytes
        # zeroed; a receiver that checks it must refuse a header it does not match.
        sent = int.from_bytes(header[checksum_at : checksum_at + 4], "big")
        zeroed = header[:checksum_at] + bytes(4) + header[checksum_at + 4 : end]
        if crc32c(zeroed) != sent:
            raise ProxyHeaderError("the PROXY protocol header's CRC32C does not match")
    return tuple(tlvs)


def _next_tlv(header: bytes, offset: int, end: int) -> tuple[int, int, int]:
    """(type, where its value starts, where it ends) of the TLV at `offset`."""
    if end - offset < _TLV_HEADER_SIZE:
        raise ProxyHeaderError("a PROXY protocol TLV is cut short")
    value_start = offset + _TLV_HEADER_SIZE
    value_end = value_start + int.from_bytes(header[offset + 1 : value_start], "big")
    if value_end > end:
        raise ProxyHeaderError(f"a PROXY protocol TLV of type {header[offset]:#04x} runs over")
    return header[offset], value_start, value_end


def _crc32c_table() -> tuple[int, ...]:
    # CRC-32C (Castagnoli), reflected polynomial 0x82F63B78: RFC 4960 appendix B.
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """The CRC-32C of `data` (RFC 4960 appendix B), as PROXY protocol's CRC32C TLV holds it."""
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
