"""The AI platform's keys and the robot's access token, kept in Secrets Manager.

One secret holds a JSON document {API_KEY, API_SECRET, ROBOT_TOKEN[, BASIC_AUTH_USER,
BASIC_AUTH_PASSWORD]}; hosts read it with their instance role (never through user data or
command lines). The token is 32 letters and digits from pulumi-random, replaced on the first
`pulumi up` of each `tokenRotationDays`-long period.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components import policies
from components.tags import tags

TOKEN_LENGTH = 32
BASIC_AUTH_USER = "robot"


def rotation_period(now_epoch_seconds: float, rotation_days: int) -> int:
    """Index of the rotation period `now` falls in; periods start at 1970-01-01 UTC.

    Used as the token's keeper: it changes exactly when a period boundary has passed, so the
    first `pulumi up` after the boundary creates a new token and no run before it does.
    """
    return int(now_epoch_seconds // (rotation_days * 86400))


@dataclass
class ApiKeysArgs:
    api_key: pulumi.Input[str]
    api_secret: pulumi.Input[str]
    token_rotation_days: int
    secret_recovery_days: int
    basic_auth: bool
    now_epoch_seconds: float | None = None  # injectable clock for tests


class ApiKeys(pulumi.ComponentResource):
    def __init__(self, name: str, args: ApiKeysArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("robot:aws:ApiKeys", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        now = time.time() if args.now_epoch_seconds is None else args.now_epoch_seconds
        period = rotation_period(now, args.token_rotation_days)

        self.token = random.RandomPassword(
            f"{name}-token",
            length=TOKEN_LENGTH,
            special=False,
            keepers={"rotationPeriod": str(period), "rotationDays": str(args.token_rotation_days)},
            opts=child,
        )
        document: dict[str, pulumi.Input[str]] = {
            "API_KEY": args.api_key,
            "API_SECRET": args.api_secret,
            "ROBOT_TOKEN": self.token.result,
        }
        self.basic_auth_password: random.RandomPassword | None = None
        if args.basic_auth:
            self.basic_auth_password = random.RandomPassword(f"{name}-basic-auth", length=24, special=False, opts=child)
            document["BASIC_AUTH_USER"] = BASIC_AUTH_USER
            document["BASIC_AUTH_PASSWORD"] = self.basic_auth_password.result

        self.secret = aws.secretsmanager.Secret(
            f"{name}-secret",
            name_prefix=f"robot-{pulumi.get_stack()}-",
            description="robot: AI platform API_KEY/API_SECRET and the robot's access token",
            recovery_window_in_days=args.secret_recovery_days,
            tags=tags(name),
            opts=child,
        )
        self.version = aws.secretsmanager.SecretVersion(
            f"{name}-secret-version",
            secret_id=self.secret.id,
            secret_string=pulumi.Output.secret(pulumi.Output.json_dumps(document)),
            opts=child,
        )
        self.read_policy, self.write_policy = (
            aws.iam.Policy(
                f"{name}-{suffix}",
                description=description,
                policy=self.secret.arn.apply(document_for),
                tags=tags(name),
                opts=child,
            )
            for suffix, description, document_for in (
                ("read", "Read the robot's secret (GetSecretValue on it only)", policies.secret_read),
                ("token-write", "Store a new robot token (init_token.sh): PutSecretValue on the robot's secret only", policies.secret_write),
            )
        )
        self.secret_arn = self.secret.arn
        self.version_id = self.version.version_id
        self.access_token = pulumi.Output.secret(self.token.result)
        self.register_outputs(
            {
                "secretArn": self.secret.arn,
                "versionId": self.version.version_id,
                "readPolicyArn": self.read_policy.arn,
                "accessToken": self.access_token,
            }
        )
