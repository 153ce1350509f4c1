"""The lists of trusted peers: --forwarded-allow-ips and --proxy-allow-from."""

from __future__ import annotations

import pytest

from corral.config import address_list
from corral.http.trusted_addresses import TrustedAddresses

LIST = TrustedAddresses(["127.0.0.1", "::1", "10.0.0.0/8", "2001:db8::/32", " 192.0.2.5 "])


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "::1", "0:0::1", "10.255.0.3", "2001:db8:1::7", "::ffff:10.1.2.3", "192.0.2.5"],
)
def test_addresses_and_networks_of_both_families_are_trusted(address: str) -> None:
    assert address in LIST


@pytest.mark.parametrize(
    "address",
    ["127.0.0.2", "::2", "11.0.0.1", "2001:db9::1", "::ffff:11.0.0.1", "localhost", "", "::1%lo"],
)
def test_anything_else_is_not(address: str) -> None:
    assert address not in LIST


def test_star_trusts_everyone_and_an_empty_list_no_one() -> None:
    assert "203.0.113.1" in TrustedAddresses(["*"])
    assert TrustedAddresses(["127.0.0.1", "*"]).trusts(("198.51.100.1", 80))
    nobody = TrustedAddresses([])
    assert nobody.empty and "127.0.0.1" not in nobody
    assert not TrustedAddresses(["*"]).empty


def test_a_unix_socket_peer_is_trusted_as_in_gunicorn() -> None:
    assert TrustedAddresses([]).trusts("")
    assert TrustedAddresses([]).trusts("/run/app.sock")
    assert LIST.trusts(("127.0.0.1", 5000))
    assert LIST.trusts(("::1", 5000, 0, 0))
    assert not LIST.trusts(("127.0.0.2", 5000))


@pytest.mark.parametrize(
    "entry", ["localhost", "10.0.0.1/8", "10.0.0.0/33", "300.0.0.1", "fe80::1%eth0", "**"]
)
def test_bad_entries_are_refused_by_the_setting_and_by_the_list(entry: str) -> None:
    with pytest.raises(ValueError, match="is not an IP address, a network or"):
        TrustedAddresses([entry])
    with pytest.raises(ValueError, match="is not an IP address, a network or"):
        address_list(f"127.0.0.1,{entry}")


def test_the_setting_takes_what_the_list_takes() -> None:
    entries = address_list("127.0.0.1, ::1,10.0.0.0/8 *")
    assert entries == ["127.0.0.1", "::1", "10.0.0.0/8", "*"]
    TrustedAddresses(entries)
    assert address_list(["192.0.2.0/24"]) == ["192.0.2.0/24"]
    assert address_list("") == []
