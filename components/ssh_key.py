"""The deployer's SSH key: the operator's own (config) or one generated with pulumi-tls.

Remote commands use it to bootstrap the hosts; the private half only ever travels as a
Pulumi secret.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_tls as tls

from components.tags import tags


@dataclass
class DeployerKeyArgs:
    public_key: str | None = None
    private_key: pulumi.Input[str] | None = None


class DeployerKey(pulumi.ComponentResource):
    def __init__(self, name: str, args: DeployerKeyArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("robot:aws:DeployerKey", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        if args.public_key and args.private_key is not None:
            public_key: pulumi.Input[str] = args.public_key
            self.private_key = pulumi.Output.secret(args.private_key)
        else:
            generated = tls.PrivateKey(f"{name}-generated", algorithm="ED25519", opts=child)
            public_key = generated.public_key_openssh
            self.private_key = pulumi.Output.secret(generated.private_key_openssh)
        self.key_pair = aws.ec2.KeyPair(
            f"{name}-keypair",
            key_name_prefix=f"robot-{pulumi.get_stack()}-",
            public_key=public_key,
            tags=tags(name),
            opts=child,
        )
        self.key_name = self.key_pair.key_name
        self.register_outputs({"keyName": self.key_name})
