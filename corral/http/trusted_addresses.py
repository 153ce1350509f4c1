"""The peers trusted to speak for a client: gunicorn's `forwarded_allow_ips` and
`proxy_allow_ips` lists.

A list holds IP addresses (`127.0.0.1`, `::1`), networks in CIDR notation (`10.0.0.0/8`,
`fd00::/8`) and `*`, which trusts every peer. A peer with no IP address, one connected
through a unix socket, is trusted whatever the list says, as gunicorn does: who may
connect to the socket is decided by its file's mode.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAX_REMEMBERED = 4096


class TrustedAddresses:
    """A set of IP addresses and networks, or every address (`*`).

    `address in trusted` takes an address as text; text that is no IP address is never
    trusted. Building one raises ValueError naming the first entry that is neither an
    address, a network nor `*`; a network with host bits set (`10.0.0.1/8`) is refused,
    as gunicorn refuses it, since it is more likely a mistake than a wish.
    """

    __slots__ = ("addresses", "any", "networks", "texts", "verdicts")

    def __init__(self, entries: Iterable[str]) -> None:
        self.any = False
        addresses: set[IPAddress] = set()
        networks: list[IPNetwork] = []
        for entry in entries:
            entry = entry.strip()
            if entry == "*":
                self.any = True
            elif "/" in entry:
                networks.append(_network(entry))
            else:
                addresses.add(_address(entry))
        self.addresses = frozenset(addresses)
        self.networks = tuple(networks)
        # Peers report their addresses in the canonical text form, so that most lookups
        # are one set membership, without parsing.
        self.texts = frozenset(str(address) for address in addresses)
        # Verdicts on other texts, remembered: parsing an address costs a microsecond or
        # two, and the same proxies and clients come back. Bounded, so that a client
        # sending ever new addresses cannot grow it without end.
        self.verdicts: dict[str, bool] = {}

    def __contains__(self, address: object) -> bool:
        if self.any:
            return True
        if not isinstance(address, str):
            return False
        if address in self.texts:
            return True
        verdict = self.verdicts.get(address)
        if verdict is None:
            parsed = parse_ip(address)
            verdict = parsed is not None and self.holds(parsed)
            if len(self.verdicts) < _MAX_REMEMBERED:
                self.verdicts[address] = verdict
        return verdict

    def holds(self, address: IPAddress) -> bool:
        """Whether a parsed address is trusted."""
        if self.any or address in self.addresses:
            return True
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        # ::ffff:10.0.0.1 is 10.0.0.1 reached over IPv6.
        if mapped is not None and self.holds(mapped):
            return True
        return any(address in network for network in self.networks)

    def trusts(self, peer: tuple[str, int] | str) -> bool:
        """Whether a connection's peer, (address, port) or a unix socket's name, is
        trusted: a unix socket's peer always is."""
        if isinstance(peer, tuple):
            return peer[0] in self
        return True

    @property
    def empty(self) -> bool:
        """True when no peer with an IP address is trusted."""
        return not (self.any or self.addresses or self.networks)


def parse_ip(text: str) -> IPAddress | None:
    """The IPv4 or IPv6 address `text` spells, or None. Zone indexes (`fe80::1%eth0`) are
    refused: they name an interface of the sender, meaningless here."""
    if "%" in text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _address(entry: str) -> IPAddress:
    address = parse_ip(entry)
    if address is None:
        raise ValueError(f"{entry!r} is not an IP address, a network or *")
    return address


def _network(entry: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(entry)
    except ValueError as error:
        raise ValueError(f"{entry!r} is not an IP address, a network or *: {error}") from None
