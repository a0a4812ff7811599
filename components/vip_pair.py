"""Keepalived VIP pair: two robot nodes in one subnet, a VIP that follows the master.

On AWS neither VRRP multicast nor gratuitous ARP moves an address, so the VIP is a secondary
private IP that the new master's notify script moves with the EC2 API, and the public entry
is an Elastic IP associated with that VIP. The program places both at creation only:
keepalived owns their placement afterwards, so the properties a failover changes are ignored
here and no later `pulumi up` (with or without --refresh) moves them back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping

import pulumi
import pulumi_aws as aws

from components import policies
from components.addressing import pair_addresses, vrrp_router_id
from components.bootstrap import Bootstrap, BootstrapArgs
from components.instance import RobotInstance, RobotInstanceArgs
from components.tags import tags

ROLES = ("primary", "backup")
# What a failover rewrites on AWS; the program must never "correct" it.
VIP_EIP_MOVABLE = ["instance", "networkInterface", "associateWithPrivateIp"]


@dataclass
class VipPairArgs:
    node: RobotInstanceArgs  # shared instance settings; subnet, addresses and role are set per node
    subnet_cidr: str
    region: str
    account_id: str
    advert_interval: float
    ssh_user: str
    private_key: pulumi.Input[str]
    host_settings: Mapping[str, pulumi.Input[str]]  # the common non-secret host settings
    secret_version_id: pulumi.Input[str]


class VipPair(pulumi.ComponentResource):
    def __init__(self, name: str, args: VipPairArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("robot:aws:VipPair", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        addresses = pair_addresses(args.subnet_cidr)
        ips = {"primary": addresses.primary, "backup": addresses.backup}

        self.nodes: dict[str, RobotInstance] = {}
        for role in ROLES:
            node_args = dataclasses.replace(
                args.node,
                role=role,
                private_ip=ips[role],
                # The VIP starts on the primary; both ignore where AWS reports it later.
                secondary_private_ips=[addresses.vip] if role == "primary" else [],
                vip_movable=True,
            )
            self.nodes[role] = RobotInstance(f"{name}-{role}", node_args, opts=child)
        primary, backup = self.nodes["primary"], self.nodes["backup"]

        self.vip_eip = aws.ec2.Eip(
            f"{name}-vip-eip",
            domain="vpc",
            network_interface=primary.network_interface_id,
            associate_with_private_ip=addresses.vip,
            tags=tags("vip"),
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=VIP_EIP_MOVABLE, depends_on=[primary.eip]),
        )

        enis = pulumi.Output.all(primary.network_interface_id, backup.network_interface_id)
        self.failover_policy = aws.iam.Policy(
            f"{name}-failover",
            description="keepalived failover: move the pair's VIP and its Elastic IP between the pair's interfaces",
            policy=pulumi.Output.all(enis, self.vip_eip.allocation_id).apply(
                lambda a: policies.vip_failover(args.node.partition, args.region, args.account_id, list(a[0]), a[1])
            ),
            tags=tags("vip"),
            opts=child,
        )
        self.failover_attachments = [
            aws.iam.RolePolicyAttachment(
                f"{name}-failover-{role}", role=node.iam_role.name, policy_arn=self.failover_policy.arn, opts=child
            )
            for role, node in self.nodes.items()
        ]

        router_id = str(vrrp_router_id(pulumi.get_stack()))
        self.bootstraps = []
        for role, peer_role in (("primary", "backup"), ("backup", "primary")):
            node, peer = self.nodes[role], self.nodes[peer_role]
            pair_settings = {
                "ROBOT_PAIR_ROLE": role,
                "ROBOT_SELF_IP": ips[role],
                "ROBOT_PEER_IP": ips[peer_role],
                "ROBOT_VIP": addresses.vip,
                "ROBOT_VRRP_ADVERT_INTERVAL": f"{args.advert_interval:g}",
                "ROBOT_VRRP_ROUTER_ID": router_id,
                "ROBOT_EIP_ALLOCATION_ID": self.vip_eip.allocation_id,
                "ROBOT_ENI_ID": node.network_interface_id,
                "ROBOT_PEER_ENI_ID": peer.network_interface_id,
            }
            self.bootstraps.append(
                Bootstrap(
                    f"{name}-{role}-bootstrap",
                    BootstrapArgs(
                        host=node.public_ip,
                        user=args.ssh_user,
                        private_key=args.private_key,
                        instance_id=node.instance_id,
                        settings={**args.host_settings, **pair_settings},
                        secret_version_id=args.secret_version_id,
                    ),
                    # keepalived's failover needs its IAM permission before it first runs.
                    opts=pulumi.ResourceOptions(parent=node, depends_on=[*self.failover_attachments, self.vip_eip]),
                )
            )

        self.vip = addresses.vip
        self.public_ip = self.vip_eip.public_ip
        self.register_outputs(
            {
                "vip": addresses.vip,
                "publicIp": self.vip_eip.public_ip,
                "primaryInstanceId": primary.instance_id,
                "backupInstanceId": backup.instance_id,
            }
        )
