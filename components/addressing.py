"""CIDR math for the pair: fixed node addresses and the VIP, chosen from the subnet's top.

Fixed addresses let each node's keepalived know its peer before either instance exists,
and the top of a subnet is where DHCP-style automatic assignment reaches last. AWS reserves
the first four addresses and the last one of every subnet.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class PairAddresses:
    primary: str
    backup: str
    vip: str


def pair_addresses(subnet_cidr: str) -> PairAddresses:
    net = ipaddress.ip_network(subnet_cidr, strict=True)
    if net.version != 4 or net.num_addresses < 16:
        raise ValueError(f"subnet {subnet_cidr} is too small for a VIP pair; need an IPv4 /28 or larger")
    last_usable = net.broadcast_address - 1  # the broadcast address is reserved by AWS
    return PairAddresses(primary=str(last_usable - 1), backup=str(last_usable - 2), vip=str(last_usable))


def vrrp_router_id(stack_name: str) -> int:
    """A stable virtual router id (1-255) per stack, so two stacks' pairs in one subnet differ."""
    return int(hashlib.sha256(stack_name.encode()).hexdigest(), 16) % 255 + 1
