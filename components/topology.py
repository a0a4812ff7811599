"""Composes the components into the configured topology and returns the stack outputs."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import images, network
from components.api_keys import ApiKeys, ApiKeysArgs
from components.bootstrap import Bootstrap, BootstrapArgs, host_settings
from components.instance import RobotInstance, RobotInstanceArgs
from components.security_group import SecurityGroup, SecurityGroupArgs
from components.settings import NAMESPACE, Settings
from components.ssh_key import DeployerKey, DeployerKeyArgs


@dataclass(frozen=True)
class Platform:
    partition: str
    dns_suffix: str
    region: str


def platform() -> Platform:
    partition = aws.get_partition()
    return Platform(partition.partition, partition.dns_suffix, aws.get_region().region)


def _image(settings: Settings) -> str:
    if settings.ami:
        return settings.ami
    return aws.ssm.get_parameter(name=images.image_parameter(settings.os, settings.instance_type)).value


def deploy(settings: Settings) -> dict[str, pulumi.Input]:
    config = pulumi.Config(NAMESPACE)
    where = platform()
    net = network.resolve(settings)
    keys = ApiKeys(
        "keys",
        ApiKeysArgs(
            api_key=config.require_secret("apiKey"),
            api_secret=config.require_secret("apiSecret"),
            token_rotation_days=settings.token_rotation_days,
            secret_recovery_days=settings.secret_recovery_days,
            basic_auth=settings.basic_auth,
        ),
    )
    deployer = DeployerKey(
        "deployer",
        DeployerKeyArgs(
            public_key=settings.ssh_public_key,
            private_key=config.get_secret("sshPrivateKey") if settings.has_ssh_private_key else None,
        ),
    )
    sg = SecurityGroup(
        "robot",
        SecurityGroupArgs(
            vpc_id=net.vpc_id,
            allowed_cidrs=settings.allowed_cidrs,
            ssh_cidrs=settings.ssh_cidrs,
            ports=settings.ingress_ports,
        ),
    )
    node = RobotInstance(
        "robot",
        RobotInstanceArgs(
            ami_id=_image(settings),
            instance_type=settings.instance_type,
            root_volume_gib=settings.root_volume_gib,
            subnet_id=net.subnet_ids[0],
            security_group_ids=[sg.id],
            key_name=deployer.key_name,
            policy_arns={"secret-read": keys.read_policy.arn, "token-write": keys.write_policy.arn},
            partition=where.partition,
            dns_suffix=where.dns_suffix,
        ),
    )
    user = images.ssh_user(settings.os)
    Bootstrap(
        "robot-bootstrap",
        BootstrapArgs(
            host=node.public_ip,
            user=user,
            private_key=deployer.private_key,
            instance_id=node.instance_id,
            settings=host_settings(settings, keys.secret_arn, where.region),
            secret_version_id=keys.version_id,
        ),
        opts=pulumi.ResourceOptions(parent=node),
    )
    return {
        "endpointUrl": pulumi.Output.concat("http://", node.public_ip, "/api/v1/chat"),
        "healthUrl": pulumi.Output.concat("http://", node.public_ip, settings.health_path),
        "publicIp": node.public_ip,
        "instanceId": node.instance_id,
        "secretArn": keys.secret_arn,
        "accessToken": keys.access_token,
        "egressIps": pulumi.Output.all(node.public_ip),
        "sshCommand": pulumi.Output.concat("ssh -i robot-deployer.key ", user, "@", node.public_ip),
        "sshPrivateKey": deployer.private_key,
    }
