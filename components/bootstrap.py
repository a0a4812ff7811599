"""Turns a booted instance into a robot node with remote commands (pulumi-command).

    wait (SSH answers, cloud-init done) -> staging dir -> copy scripts/, robot/, settings.env
    -> sudo scripts/bootstrap.sh --source STAGING --settings STAGING/settings.env

Only non-secret settings travel: the host reads its keys and token from Secrets Manager with
its instance role. The run step's triggers are a digest of every shipped file, the settings
text, the secret's version and the instance id, so a change to any of them re-runs it and
nothing else does.
"""

from __future__ import annotations

import hashlib
import os
import shlex
from dataclasses import dataclass
from typing import Mapping

import pulumi
import pulumi_command as command

from components.settings import Settings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = ("scripts", "robot")
STAGING = "robot-staging"  # under the login user's home: CopyToRemote cannot use sudo
# A booting instance refuses SSH for a minute or two: keep dialing (about 15 minutes at most).
DIAL_ERROR_LIMIT = 90
PER_DIAL_TIMEOUT = 10
# cloud-init exits 2 for "done, with recoverable errors" (e.g. a deprecated key): not fatal.
WAIT_FOR_BOOT = "cloud-init status --wait >/dev/null 2>&1 || [ $? -eq 2 ]"


def _shipped_files(root: str, dirs: tuple[str, ...]) -> list[str]:
    files = []
    for top in dirs:
        for base, subdirs, names in os.walk(os.path.join(root, top)):
            subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
            files += [os.path.join(base, n) for n in sorted(names) if not n.endswith((".pyc", ".pyo"))]
    return files


def tree_digest(root: str = ROOT, dirs: tuple[str, ...] = SHIPPED) -> str:
    """sha256 over the relative paths and contents of every shipped file (caches excluded)."""
    digest = hashlib.sha256()
    for path in _shipped_files(root, dirs):
        digest.update(os.path.relpath(path, root).encode() + b"\0")
        with open(path, "rb") as fh:
            digest.update(hashlib.sha256(fh.read()).digest())
    return digest.hexdigest()


def render_settings(values: Mapping[str, str]) -> str:
    """settings.env: sorted KEY=VALUE lines, values shell-quoted (bootstrap sources it)."""
    return "".join(f"{key}={shlex.quote(str(values[key]))}\n" for key in sorted(values))


def host_settings(
    settings: Settings,
    secret_arn: pulumi.Input[str],
    region: str,
    trusted_proxies: str = "",
    extra: Mapping[str, pulumi.Input[str]] | None = None,
) -> dict[str, pulumi.Input[str]]:
    """The non-secret settings a host needs (the contract in scripts/README.md)."""
    return {
        "ROBOT_TOPOLOGY": settings.topology,
        "ROBOT_PORT": str(settings.robot_port),
        "ROBOT_HEALTH_PATH": settings.health_path,
        "ROBOT_UPSTREAM_URL": settings.upstream_url,
        "ROBOT_MODEL": settings.model,
        "ROBOT_IMAGE": settings.robot_image or "",
        "ROBOT_BASIC_AUTH": str(settings.basic_auth).lower(),
        "ROBOT_EXPOSE_PORT": str(settings.expose_robot_port).lower(),
        "ROBOT_SECRET_ID": secret_arn,
        "AWS_REGION": region,
        "ROBOT_ALLOWED_CIDRS": " ".join(settings.allowed_cidrs),
        "ROBOT_SSH_CIDRS": " ".join(settings.ssh_cidrs),
        "ROBOT_DDOS_RPS": str(settings.ddos_requests_per_second),
        "ROBOT_DDOS_CONN_PER_IP": str(settings.ddos_connections_per_ip),
        "ROBOT_DDOS_WINDOW": str(settings.ddos_window_seconds),
        "ROBOT_TRUSTED_PROXIES": trusted_proxies,
        "ROBOT_GPU": str(settings.gpu).lower(),
        "ROBOT_GPU_DRIVER": settings.gpu_driver,
        **(extra or {}),
    }


@dataclass
class BootstrapArgs:
    host: pulumi.Input[str]  # the Elastic IP
    user: str
    private_key: pulumi.Input[str]  # secret
    instance_id: pulumi.Input[str]
    settings: Mapping[str, pulumi.Input[str]]  # non-secret only
    secret_version_id: pulumi.Input[str]
    source_root: str = ROOT


class Bootstrap(pulumi.ComponentResource):
    def __init__(self, name: str, args: BootstrapArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("robot:aws:Bootstrap", name, None, opts)
        connection = command.remote.ConnectionArgs(
            host=args.host,
            user=args.user,
            private_key=args.private_key,
            dial_error_limit=DIAL_ERROR_LIMIT,
            per_dial_timeout=PER_DIAL_TIMEOUT,
        )
        staging = f"/home/{args.user}/{STAGING}"
        digest = tree_digest(args.source_root)
        settings_text = pulumi.Output.all(**dict(args.settings)).apply(render_settings)

        self.wait = command.remote.Command(
            f"{name}-wait",
            connection=connection,
            create=WAIT_FOR_BOOT,
            triggers=[args.instance_id],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.staging = command.remote.Command(
            f"{name}-staging",
            connection=connection,
            create=f"mkdir -p {staging} && chmod 700 {staging}",
            triggers=[args.instance_id],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.wait]),
        )
        # remote_path is then an existing directory, so each folder lands as STAGING/<name>.
        copied = pulumi.ResourceOptions(parent=self, depends_on=[self.staging])
        self.copies = [
            command.remote.CopyToRemote(
                f"{name}-copy-{top}",
                connection=connection,
                source=pulumi.FileArchive(os.path.join(args.source_root, top)),
                remote_path=staging,
                triggers=[args.instance_id, digest],
                opts=copied,
            )
            for top in SHIPPED
        ]
        self.settings_file = command.remote.CopyToRemote(
            f"{name}-copy-settings",
            connection=connection,
            source=settings_text.apply(pulumi.StringAsset),
            remote_path=f"{staging}/settings.env",
            triggers=[args.instance_id, settings_text],
            opts=copied,
        )
        run = f"sudo bash {staging}/scripts/bootstrap.sh --source {staging} --settings {staging}/settings.env"
        self.run = command.remote.Command(
            f"{name}-run",
            connection=connection,
            create=run,
            update=run,
            # Idempotent: stops the robot so in-flight chats finish (SIGTERM drains) and removes
            # the staging copy; nothing fails if either is already gone.
            delete=f"sudo systemctl stop robot 2>/dev/null || true; rm -rf {staging}",
            triggers=[args.instance_id, digest, settings_text, args.secret_version_id],
            # bootstrap logs its steps to stderr and never a secret; the captured output is
            # kept secret in the state all the same.
            logging=command.remote.Logging.STDERR,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*self.copies, self.settings_file],
                additional_secret_outputs=["stdout", "stderr"],
            ),
        )
        self.digest = digest
        self.register_outputs({"digest": digest, "stdout": self.run.stdout})
