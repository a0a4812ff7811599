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


def secret_read(secret_arn: str) -> str:
    """The host reads its keys and token; nothing else."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ReadRobotSecret",
                    "Effect": "Allow",
                    "Action": "secretsmanager:GetSecretValue",
                    "Resource": secret_arn,
                }
            ],
        }
    )


def secret_write(secret_arn: str) -> str:
    """init_token.sh on the host stores a new token as a new version of the same secret."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "RotateRobotToken",
                    "Effect": "Allow",
                    "Action": "secretsmanager:PutSecretValue",
                    "Resource": secret_arn,
                }
            ],
        }
    )


def managed_policy_arn(partition: str, name: str) -> str:
    return f"arn:{partition}:iam::aws:policy/{name}"
