"""Where the stack lives: the configured VPC and subnets, or the region's default VPC."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.settings import Settings


@dataclass(frozen=True)
class Network:
    vpc_id: str
    vpc_cidr: str
    subnet_ids: tuple[str, ...]


def resolve(settings: Settings) -> Network:
    if settings.vpc_id:
        vpc = aws.ec2.get_vpc(id=settings.vpc_id)
    else:
        vpc = aws.ec2.get_vpc(default=True)
    subnet_ids = settings.subnet_ids
    if not subnet_ids:
        filters = [aws.ec2.GetSubnetsFilterArgs(name="vpc-id", values=[vpc.id])]
        if not settings.vpc_id:
            # The default VPC has one public default subnet per availability zone.
            filters.append(aws.ec2.GetSubnetsFilterArgs(name="default-for-az", values=["true"]))
        subnet_ids = tuple(sorted(aws.ec2.get_subnets(filters=filters).ids))
    if not subnet_ids:
        raise pulumi.RunError(f"VPC {vpc.id} has no subnets; set robot:vpcId and robot:subnetIds")
    return Network(vpc_id=vpc.id, vpc_cidr=vpc.cidr_block, subnet_ids=tuple(subnet_ids))
