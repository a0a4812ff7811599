"""Base images: the public SSM parameters AWS and the distributions publish, per OS family.

Looking the AMI up through these parameters is what AWS recommends: always the current
image of the family, no owner ids to keep up to date.
"""

import re

# {os: (parameter for amd64, parameter for arm64, SSH login user)}
IMAGES = {
    "ubuntu-24.04": (
        "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id",
        "/aws/service/canonical/ubuntu/server/24.04/stable/current/arm64/hvm/ebs-gp3/ami-id",
        "ubuntu",
    ),
    "ubuntu-22.04": (
        "/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id",
        "/aws/service/canonical/ubuntu/server/22.04/stable/current/arm64/hvm/ebs-gp2/ami-id",
        "ubuntu",
    ),
    "debian-12": (
        "/aws/service/debian/release/bookworm/latest/amd64",
        "/aws/service/debian/release/bookworm/latest/arm64",
        "admin",
    ),
    "al2023": (
        "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
        "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64",
        "ec2-user",
    ),
}

# Graviton families carry a "g" right after the generation digit: t4g, m7g, c7gn, r8g...
_ARM = re.compile(r"^[a-z]+\d+g[a-z]*\.")


def architecture(instance_type: str) -> str:
    return "arm64" if _ARM.match(instance_type) else "amd64"


def image_parameter(os_family: str, instance_type: str) -> str:
    amd64, arm64, _ = IMAGES[os_family]
    return arm64 if architecture(instance_type) == "arm64" else amd64


def ssh_user(os_family: str) -> str:
    return IMAGES[os_family][2]
