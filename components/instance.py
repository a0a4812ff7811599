"""One robot host: IAM role and instance profile, the EC2 instance, its Elastic IP.

Secure by default: IMDSv2 required with a hop limit of 1 (containers on the host cannot
reach the instance role), an encrypted gp3 root volume, a role that can read the robot's
secret and talk to Session Manager (a fallback to SSH) and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import pulumi
import pulumi_aws as aws

from components import policies
from components.tags import tags

SSM_CORE_POLICY = "AmazonSSMManagedInstanceCore"


@dataclass
class RobotInstanceArgs:
    ami_id: pulumi.Input[str]
    instance_type: str
    root_volume_gib: int
    subnet_id: pulumi.Input[str]
    security_group_ids: Sequence[pulumi.Input[str]]
    key_name: pulumi.Input[str]
    policy_arns: dict[str, pulumi.Input[str]]  # short name -> policy ARN, attached to the role
    partition: str
    dns_suffix: str
    role: str = "robot"
    private_ip: str | None = None
    # Secondary private IPs given at creation (the pair's VIP); keepalived moves them later,
    # so the program ignores where AWS reports them afterwards.
    secondary_private_ips: Sequence[str] = field(default_factory=list)
    vip_movable: bool = False  # a pair member: keepalived moves the VIP on and off this host
    detailed_monitoring: bool = True


class RobotInstance(pulumi.ComponentResource):
    def __init__(self, name: str, args: RobotInstanceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("robot:aws:RobotInstance", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.iam_role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=policies.assume_role(args.dns_suffix),
            description=f"robot {args.role} host",
            tags=tags(args.role),
            opts=child,
        )
        attachments = {"ssm-core": policies.managed_policy_arn(args.partition, SSM_CORE_POLICY), **args.policy_arns}
        self.attachments = [
            aws.iam.RolePolicyAttachment(f"{name}-{short}", role=self.iam_role.name, policy_arn=arn, opts=child)
            for short, arn in attachments.items()
        ]
        self.profile = aws.iam.InstanceProfile(f"{name}-profile", role=self.iam_role.name, tags=tags(args.role), opts=child)

        # The AMI comes from a "latest image" parameter: a newer image must not replace a
        # running host on the next `pulumi up` (roll hosts deliberately instead).
        ignored = ["ami"]
        if args.vip_movable:
            ignored.append("secondaryPrivateIps")
        self.instance = aws.ec2.Instance(
            f"{name}-instance",
            ami=args.ami_id,
            instance_type=args.instance_type,
            subnet_id=args.subnet_id,
            vpc_security_group_ids=list(args.security_group_ids),
            iam_instance_profile=self.profile.name,
            key_name=args.key_name,
            private_ip=args.private_ip,
            secondary_private_ips=list(args.secondary_private_ips) or None,
            monitoring=args.detailed_monitoring,
            metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
                http_endpoint="enabled",
                http_tokens="required",
                http_put_response_hop_limit=1,
            ),
            root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                volume_type="gp3",
                volume_size=args.root_volume_gib,
                encrypted=True,
                delete_on_termination=True,
                tags=tags(args.role),
            ),
            tags=tags(args.role, Name=f"{pulumi.get_project()}-{pulumi.get_stack()}-{name}"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.attachments, ignore_changes=ignored),
        )
        self.eip = aws.ec2.Eip(
            f"{name}-eip",
            domain="vpc",
            instance=self.instance.id,
            tags=tags(args.role),
            opts=child,
        )
        self.instance_id = self.instance.id
        self.public_ip = self.eip.public_ip
        self.private_ip = self.instance.private_ip
        self.network_interface_id = self.instance.primary_network_interface_id
        self.register_outputs(
            {
                "instanceId": self.instance.id,
                "publicIp": self.eip.public_ip,
                "privateIp": self.instance.private_ip,
                "roleName": self.iam_role.name,
            }
        )
