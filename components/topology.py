"""Composes the components into the configured topology and returns the stack outputs."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import images, load_balancer, network
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
    lb_sg: SecurityGroup | None
    ami_id: str  # looked up once for every node

    def node_args(self, subnet_id: str) -> RobotInstanceArgs:
        return RobotInstanceArgs(
            ami_id=self.ami_id,
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
        # Behind the ALB, nginx trusts X-Forwarded-For from inside the VPC only.
        proxies = self.net.vpc_cidr if self.lb_sg else ""
        return host_settings(self.settings, self.keys.secret_arn, self.where.region, trusted_proxies=proxies)

    @property
    def ssh_user(self) -> str:
        return images.ssh_user(self.settings.os)

    def ssh_command(self, ip: pulumi.Input[str]) -> pulumi.Output[str]:
        return pulumi.Output.concat("ssh -i robot-deployer.key ", self.ssh_user, "@", ip)

    def outputs(self, base_url: pulumi.Input[str], instance_id: pulumi.Input[str], egress: list, login_ip: pulumi.Input[str]) -> dict:
        return {
            "endpointUrl": pulumi.Output.concat(base_url, "/api/v1/chat"),
            "healthUrl": pulumi.Output.concat(base_url, self.settings.health_path),
            "instanceId": instance_id,
            "secretArn": self.keys.secret_arn,
            "accessToken": self.keys.access_token,
            "egressIps": pulumi.Output.all(*egress),
            "sshCommand": self.ssh_command(login_ip),
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
    lb_sg = None
    if settings.topology == "balanced":
        lb_sg = SecurityGroup(
            "lb",
            SecurityGroupArgs(
                vpc_id=net.vpc_id,
                allowed_cidrs=settings.allowed_cidrs,
                ssh_cidrs=(),
                ports=load_balancer.listen_ports(settings.certificate_arn),
                description="robot load balancer",
            ),
        )
    sg = SecurityGroup(
        "robot",
        SecurityGroupArgs(
            vpc_id=net.vpc_id,
            allowed_cidrs=settings.allowed_cidrs,
            ssh_cidrs=settings.ssh_cidrs,
            # Behind the ALB only nginx's port is opened, and only to the ALB's group.
            ports=(load_balancer.TARGET_PORT,) if lb_sg else settings.ingress_ports,
            vrrp=settings.topology == "pair",
            lb_security_group_id=lb_sg.id if lb_sg else None,
        ),
    )
    return Common(settings, platform(), net, keys, deployer, sg, lb_sg, _image(settings))


def _bootstrapped_node(c: Common, name: str, subnet_id: str) -> RobotInstance:
    node = RobotInstance(name, c.node_args(subnet_id))
    Bootstrap(
        f"{name}-bootstrap",
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
    return node


def single(c: Common) -> dict:
    node = _bootstrapped_node(c, "robot", c.net.subnet_ids[0])
    outputs = c.outputs(pulumi.Output.concat("http://", node.public_ip), node.instance_id, [node.public_ip], node.public_ip)
    return {**outputs, "publicIp": node.public_ip}


def balanced(c: Common) -> dict:
    subnets = c.net.subnet_ids
    # Spread the nodes round-robin over the subnets (one per availability zone by default).
    nodes = [_bootstrapped_node(c, f"robot-{i}", subnets[i % len(subnets)]) for i in range(c.settings.instance_count)]
    lb = load_balancer.LoadBalancer(
        "lb",
        load_balancer.LoadBalancerArgs(
            vpc_id=c.net.vpc_id,
            subnet_ids=subnets,
            security_group_id=c.lb_sg.id,
            instance_ids=[n.instance_id for n in nodes],
            health_path=c.settings.health_path,
            certificate_arn=c.settings.certificate_arn,
            ddos_requests_per_second=c.settings.ddos_requests_per_second,
            ddos_window_seconds=c.settings.ddos_window_seconds,
        ),
    )
    outputs = c.outputs(lb.base_url, nodes[0].instance_id, [n.public_ip for n in nodes], nodes[0].public_ip)
    # An ALB has no fixed address: its DNS name stands where the other topologies export publicIp.
    return {**outputs, "loadBalancerDnsName": lb.dns_name, "instanceIds": pulumi.Output.all(*[n.instance_id for n in nodes])}


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
    outputs = c.outputs(
        pulumi.Output.concat("http://", vip.public_ip), primary.instance_id, [primary.public_ip, backup.public_ip], primary.public_ip
    )
    return {
        **outputs,
        "publicIp": vip.public_ip,
        "vip": vip.vip,
        "backupInstanceId": backup.instance_id,
        "nodePublicIps": pulumi.Output.all(primary.public_ip, backup.public_ip),
        "backupSshCommand": c.ssh_command(backup.public_ip),
    }


TOPOLOGIES = {"single": single, "pair": pair, "balanced": balanced}


def deploy(settings: Settings) -> dict[str, pulumi.Input]:
    return TOPOLOGIES[settings.topology](common(settings))
