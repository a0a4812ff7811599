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
from components.vip_pair import VipPair, VipPairArgs


@dataclass(frozen=True)
class Platform:
    partition: str
    dns_suffix: str
    region: str
    account_id: str


def platform() -> Platform:
    partition = aws.get_partition()
    return Platform(partition.partition, partition.dns_suffix, aws.get_region().region, aws.get_caller_identity().account_id)


def _image(settings: Settings) -> str:
    if settings.ami:
        return settings.ami
    return aws.ssm.get_parameter(name=images.image_parameter(settings.os, settings.instance_type)).value


@dataclass
class Common:
    """What every topology shares: where, the keys, the deployer's key, the security group."""

    settings: Settings
    where: Platform
    net: network.Network
    keys: ApiKeys
    deployer: DeployerKey
    sg: SecurityGroup

    def node_args(self, subnet_id: str) -> RobotInstanceArgs:
        return RobotInstanceArgs(
            ami_id=_image(self.settings),
            instance_type=self.settings.instance_type,
            root_volume_gib=self.settings.root_volume_gib,
            subnet_id=subnet_id,
            security_group_ids=[self.sg.id],
            key_name=self.deployer.key_name,
            policy_arns={"secret-read": self.keys.read_policy.arn, "token-write": self.keys.write_policy.arn},
            partition=self.where.partition,
            dns_suffix=self.where.dns_suffix,
        )

    def host_settings(self) -> dict[str, pulumi.Input[str]]:
        return host_settings(self.settings, self.keys.secret_arn, self.where.region)

    @property
    def ssh_user(self) -> str:
        return images.ssh_user(self.settings.os)

    def outputs(self, entry_ip: pulumi.Input[str], instance_id: pulumi.Input[str], egress: list, login_ip: pulumi.Input[str]) -> dict:
        return {
            "endpointUrl": pulumi.Output.concat("http://", entry_ip, "/api/v1/chat"),
            "healthUrl": pulumi.Output.concat("http://", entry_ip, self.settings.health_path),
            "publicIp": entry_ip,
            "instanceId": instance_id,
            "secretArn": self.keys.secret_arn,
            "accessToken": self.keys.access_token,
            "egressIps": pulumi.Output.all(*egress),
            "sshCommand": pulumi.Output.concat("ssh -i robot-deployer.key ", self.ssh_user, "@", login_ip),
            "sshPrivateKey": self.deployer.private_key,
        }


def common(settings: Settings) -> Common:
    config = pulumi.Config(NAMESPACE)
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
            vrrp=settings.topology == "pair",
        ),
    )
    return Common(settings, platform(), net, keys, deployer, sg)


def single(c: Common) -> dict:
    node = RobotInstance("robot", c.node_args(c.net.subnet_ids[0]))
    Bootstrap(
        "robot-bootstrap",
        BootstrapArgs(
            host=node.public_ip,
            user=c.ssh_user,
            private_key=c.deployer.private_key,
            instance_id=node.instance_id,
            settings=c.host_settings(),
            secret_version_id=c.keys.version_id,
        ),
        opts=pulumi.ResourceOptions(parent=node),
    )
    return c.outputs(node.public_ip, node.instance_id, [node.public_ip], node.public_ip)


def pair(c: Common) -> dict:
    subnet = aws.ec2.get_subnet(id=c.net.subnet_ids[0])
    vip = VipPair(
        "pair",
        VipPairArgs(
            node=c.node_args(subnet.id),
            subnet_cidr=subnet.cidr_block,
            region=c.where.region,
            account_id=c.where.account_id,
            advert_interval=c.settings.vrrp_advert_interval,
            ssh_user=c.ssh_user,
            private_key=c.deployer.private_key,
            host_settings=c.host_settings(),
            secret_version_id=c.keys.version_id,
        ),
    )
    primary, backup = vip.nodes["primary"], vip.nodes["backup"]
    outputs = c.outputs(vip.public_ip, primary.instance_id, [primary.public_ip, backup.public_ip], primary.public_ip)
    outputs.update(
        {
            "vip": vip.vip,
            "backupInstanceId": backup.instance_id,
            "nodePublicIps": pulumi.Output.all(primary.public_ip, backup.public_ip),
            "backupSshCommand": pulumi.Output.concat("ssh -i robot-deployer.key ", c.ssh_user, "@", backup.public_ip),
        }
    )
    return outputs


TOPOLOGIES = {"single": single, "pair": pair}


def deploy(settings: Settings) -> dict[str, pulumi.Input]:
    return TOPOLOGIES[settings.topology](common(settings))
