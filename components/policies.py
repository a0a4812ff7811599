"""IAM policy documents as plain functions (tested without Pulumi).

Every ARN is built from the partition (aws, aws-cn, aws-us-gov) the stack runs in, and
every statement names the stack's own resources: least privilege by construction.
"""

from __future__ import annotations

import json


def assume_role(service_dns_suffix: str) -> str:
    """Trust policy letting EC2 instances take the role (ec2.amazonaws.com[.cn])."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": f"ec2.{service_dns_suffix}"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )


def _allow(sid: str, action: str, resource: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{"Sid": sid, "Effect": "Allow", "Action": action, "Resource": resource}]})


def secret_read(secret_arn: str) -> str:
    """The host reads its keys and token; nothing else."""
    return _allow("ReadRobotSecret", "secretsmanager:GetSecretValue", secret_arn)


def secret_write(secret_arn: str) -> str:
    """init_token.sh on the host stores a new token as a new version of the same secret."""
    return _allow("RotateRobotToken", "secretsmanager:PutSecretValue", secret_arn)


def managed_policy_arn(partition: str, name: str) -> str:
    return f"arn:{partition}:iam::aws:policy/{name}"


def vip_failover(partition: str, region: str, account: str, eni_ids: list[str], allocation_id: str) -> str:
    """keepalived's failover program moves the VIP and its EIP between the pair's ENIs only.

    Exactly the calls scripts/keepalived/vip_failover.py makes: it re-assigns and re-associates
    (--allow-reassignment / --allow-reassociation) and never needs unassign or disassociate.
    Describe calls cannot be scoped to resources in IAM, so they are the only "*" statement.
    """
    enis = [f"arn:{partition}:ec2:{region}:{account}:network-interface/{eni}" for eni in eni_ids]
    eip = f"arn:{partition}:ec2:{region}:{account}:elastic-ip/{allocation_id}"
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "MoveVipBetweenPairInterfaces",
                    "Effect": "Allow",
                    "Action": "ec2:AssignPrivateIpAddresses",
                    "Resource": enis,
                },
                {
                    "Sid": "MovePairElasticIp",
                    "Effect": "Allow",
                    "Action": "ec2:AssociateAddress",
                    "Resource": [eip, *enis],
                },
                {
                    "Sid": "ReadPlacement",
                    "Effect": "Allow",
                    "Action": ["ec2:DescribeNetworkInterfaces", "ec2:DescribeAddresses"],
                    "Resource": "*",
                },
            ],
        }
    )
