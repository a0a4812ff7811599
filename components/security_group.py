"""The instances' security group: a whitelist, one described rule resource per opening.

Rules are separate `aws.vpc.SecurityGroup{Ingress,Egress}Rule` resources (never inline as
well: mixing both makes the provider fight itself).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.tags import tags

VRRP_PROTOCOL = "112"


@dataclass(frozen=True)
class IngressRule:
    """A pure description of one ingress opening; `rules()` computes them from settings."""

    name: str
    port: int | None  # None for protocol-wide rules (VRRP)
    protocol: str
    description: str
    cidr: str | None = None
    from_group: str | None = None  # "self" or "lb"


def _cidr_kind(cidr: str) -> str:
    return "ipv6" if ipaddress.ip_network(cidr).version == 6 else "ipv4"


def rules(
    allowed_cidrs: tuple[str, ...],
    ssh_cidrs: tuple[str, ...],
    ports: tuple[int, ...],
    vrrp: bool = False,
    behind_lb: bool = False,
) -> list[IngressRule]:
    """Ingress rules: service ports from allowedCidrs (or only from the LB), SSH, VRRP between members."""
    result: list[IngressRule] = []
    for port in ports:
        if behind_lb:
            result.append(IngressRule(f"tcp{port}-lb", port, "tcp", f"port {port} from the load balancer only", from_group="lb"))
            continue
        for index, cidr in enumerate(allowed_cidrs):
            result.append(IngressRule(f"tcp{port}-{index}", port, "tcp", f"port {port} from allowedCidrs {cidr}", cidr=cidr))
    for index, cidr in enumerate(ssh_cidrs):
        result.append(IngressRule(f"ssh-{index}", 22, "tcp", f"SSH from sshCidrs {cidr}", cidr=cidr))
    if vrrp:
        # Without VRRP between the members both nodes believe they are master (split brain).
        result.append(IngressRule("vrrp", None, VRRP_PROTOCOL, "VRRP between the pair's members only", from_group="self"))
    return result


@dataclass
class SecurityGroupArgs:
    vpc_id: pulumi.Input[str]
    allowed_cidrs: tuple[str, ...]
    ssh_cidrs: tuple[str, ...]
    ports: tuple[int, ...]
    vrrp: bool = False
    lb_security_group_id: pulumi.Input[str] | None = None
    description: str = "robot instances"
    extra_tags: dict[str, str] = field(default_factory=dict)


class SecurityGroup(pulumi.ComponentResource):
    """A security group with whitelisted ingress and open egress (the robot calls the AI API)."""

    def __init__(self, name: str, args: SecurityGroupArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("robot:aws:SecurityGroup", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args.vpc_id,
            description=args.description,
            revoke_rules_on_delete=True,
            tags=tags(name, **args.extra_tags),
            opts=child,
        )
        self.rules = []
        behind_lb = args.lb_security_group_id is not None
        for rule in rules(args.allowed_cidrs, args.ssh_cidrs, args.ports, args.vrrp, behind_lb):
            source: dict[str, pulumi.Input[str]] = {}
            if rule.cidr is not None:
                source[f"cidr_{_cidr_kind(rule.cidr)}"] = rule.cidr
            elif rule.from_group == "self":
                source["referenced_security_group_id"] = self.group.id
            else:
                source["referenced_security_group_id"] = args.lb_security_group_id
            ports = {"from_port": rule.port, "to_port": rule.port} if rule.port is not None else {}
            self.rules.append(
                aws.vpc.SecurityGroupIngressRule(
                    f"{name}-{rule.name}",
                    security_group_id=self.group.id,
                    ip_protocol=rule.protocol,
                    description=rule.description,
                    tags=tags(name),
                    opts=child,
                    **ports,
                    **source,
                )
            )
        for kind, cidr in (("ipv4", "0.0.0.0/0"), ("ipv6", "::/0")):
            self.rules.append(
                aws.vpc.SecurityGroupEgressRule(
                    f"{name}-egress-{kind}",
                    security_group_id=self.group.id,
                    ip_protocol="-1",
                    description="all egress: the robot calls the AI platform's API and package mirrors",
                    tags=tags(name),
                    opts=child,
                    **{f"cidr_{kind}": cidr},
                )
            )
        self.id = self.group.id
        self.register_outputs({"id": self.group.id})
