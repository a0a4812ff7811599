"""The balanced topology's front: an ALB over the robot nodes, TLS via ACM, WAF rate limiting.

Instances accept web traffic from the ALB's security group only (see SecurityGroup); nginx on each node sees the
client address in X-Forwarded-For (trusted from the VPC) so its per-client limits still hold.
The WAF rule is the guide's DDoS threshold at the edge: `ddosRequestsPerSecond` sustained over
`ddosWindowSeconds` from one address gets that address blocked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pulumi
import pulumi_aws as aws

from components.tags import tags

# TLS 1.3 with 1.2 as the floor: AWS's recommended policy for new HTTPS listeners.
SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
TARGET_PORT = 80  # nginx on the node; the robot itself stays behind it


def listen_ports(certificate_arn: str | None) -> tuple[int, ...]:
    return (80, 443) if certificate_arn else (80,)


def waf_limit(requests_per_second: int, window_seconds: int) -> int:
    """WAF counts requests per window per address; its floor is 10 and its ceiling 2e9."""
    return max(10, min(2_000_000_000, requests_per_second * window_seconds))


@dataclass
class LoadBalancerArgs:
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[str]
    security_group_id: pulumi.Input[str]  # 80 (and 443) from allowedCidrs: see topology.common
    instance_ids: Sequence[pulumi.Input[str]]
    health_path: str
    certificate_arn: str | None
    ddos_requests_per_second: int
    ddos_window_seconds: int


class LoadBalancer(pulumi.ComponentResource):
    def __init__(self, name: str, args: LoadBalancerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("robot:aws:LoadBalancer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.alb = aws.lb.LoadBalancer(
            f"{name}-alb",
            load_balancer_type="application",
            subnets=list(args.subnet_ids),
            security_groups=[args.security_group_id],
            drop_invalid_header_fields=True,
            idle_timeout=120,  # a chat answer can take a while
            tags=tags(name),
            opts=child,
        )
        self.target_group = aws.lb.TargetGroup(
            f"{name}-tg",
            vpc_id=args.vpc_id,
            port=TARGET_PORT,
            protocol="HTTP",
            target_type="instance",
            deregistration_delay=30,
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                path=args.health_path,
                matcher="200",
                interval=10,
                timeout=5,
                healthy_threshold=2,
                unhealthy_threshold=3,
            ),
            tags=tags(name),
            opts=child,
        )
        for index, instance_id in enumerate(args.instance_ids):
            aws.lb.TargetGroupAttachment(
                f"{name}-target-{index}",
                target_group_arn=self.target_group.arn,
                target_id=instance_id,
                port=TARGET_PORT,
                opts=child,
            )
        forward = aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=self.target_group.arn)
        if args.certificate_arn:
            aws.lb.Listener(
                f"{name}-https",
                load_balancer_arn=self.alb.arn,
                port=443,
                protocol="HTTPS",
                ssl_policy=SSL_POLICY,
                certificate_arn=args.certificate_arn,
                default_actions=[forward],
                tags=tags(name),
                opts=child,
            )
            http_action = aws.lb.ListenerDefaultActionArgs(
                type="redirect",
                redirect=aws.lb.ListenerDefaultActionRedirectArgs(port="443", protocol="HTTPS", status_code="HTTP_301"),
            )
        else:
            http_action = forward
        aws.lb.Listener(
            f"{name}-http",
            load_balancer_arn=self.alb.arn,
            port=80,
            protocol="HTTP",
            default_actions=[http_action],
            tags=tags(name),
            opts=child,
        )

        visibility = dict(cloudwatch_metrics_enabled=True, sampled_requests_enabled=True)
        self.web_acl = aws.wafv2.WebAcl(
            f"{name}-waf",
            scope="REGIONAL",
            default_action=aws.wafv2.WebAclDefaultActionArgs(allow=aws.wafv2.WebAclDefaultActionAllowArgs()),
            rules=[
                aws.wafv2.WebAclRuleArgs(
                    name="ddos-rate-limit",
                    priority=0,
                    action=aws.wafv2.WebAclRuleActionArgs(block=aws.wafv2.WebAclRuleActionBlockArgs()),
                    statement=aws.wafv2.WebAclRuleStatementArgs(
                        rate_based_statement=aws.wafv2.WebAclRuleStatementRateBasedStatementArgs(
                            aggregate_key_type="IP",
                            limit=waf_limit(args.ddos_requests_per_second, args.ddos_window_seconds),
                            evaluation_window_sec=args.ddos_window_seconds,
                        )
                    ),
                    visibility_config=aws.wafv2.WebAclRuleVisibilityConfigArgs(metric_name=f"{name}-ddos", **visibility),
                )
            ],
            visibility_config=aws.wafv2.WebAclVisibilityConfigArgs(metric_name=f"{name}-waf", **visibility),
            tags=tags(name),
            opts=child,
        )
        aws.wafv2.WebAclAssociation(f"{name}-waf-alb", resource_arn=self.alb.arn, web_acl_arn=self.web_acl.arn, opts=child)

        scheme = "https" if args.certificate_arn else "http"
        self.dns_name = self.alb.dns_name
        self.base_url = pulumi.Output.concat(scheme, "://", self.alb.dns_name)
        self.register_outputs({"dnsName": self.alb.dns_name, "baseUrl": self.base_url})
