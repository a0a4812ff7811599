"""Typed, validated stack settings: every `robot:*` config key is read here, once.

`parse()` is pure (raw config strings in, `Settings` out) so it is tested without Pulumi.
It collects every problem and raises one `ConfigError` naming each key, its value and what
is allowed, before the program registers any resource: nothing is half-deployed by a typo.
`ConfigError` is a `pulumi.RunError`, which the CLI prints without a Python traceback.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import pulumi

NAMESPACE = "robot"
TOPOLOGIES = ("single", "pair", "balanced")
OSES = ("ubuntu-24.04", "ubuntu-22.04", "debian-12", "al2023")
RESERVED_PORTS = {22: "SSH", 80: "HTTP (nginx)", 443: "HTTPS (nginx)"}
WAF_WINDOWS = (60, 120, 300, 600)  # the only evaluation windows a WAFv2 rate-based rule accepts
GPU_FAMILIES = ("g", "p")  # EC2 families with NVIDIA GPUs (g4dn, g5, g6, p3, p4d, p5...)
PUBLIC_CIDRS = {ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")}


class ConfigError(pulumi.RunError):
    """Invalid configuration; the message lists every problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"robot configuration is invalid ({len(problems)} problem(s)):\n{lines}")


@dataclass(frozen=True)
class Option:
    """One config key: its type, default and meaning (mirrored in Pulumi.yaml and README)."""

    key: str
    type: str  # string | integer | number | boolean | array
    default: Any
    description: str
    secret: bool = False
    required: bool = False


# The single list of keys. Pulumi.yaml's config block and the README table are checked
# against it by tests, so the three cannot drift.
OPTIONS: tuple[Option, ...] = (
    Option("topology", "string", "single", "single (one instance + Elastic IP), pair (Keepalived VIP pair), balanced (ALB over instanceCount instances)."),
    Option("allowedCidrs", "array", None, "CIDRs that may reach 80, 443 and robotPort. Required.", required=True),
    Option("sshCidrs", "array", None, "CIDRs that may reach SSH (22); the deployer must be inside. Default: allowedCidrs."),
    Option("allowPublicSsh", "boolean", False, "Permit 0.0.0.0/0 or ::/0 in sshCidrs."),
    Option("apiKey", "string", None, "The AI platform's API key (API_KEY). Required, set with --secret.", secret=True, required=True),
    Option("apiSecret", "string", None, "The AI platform's API secret (API_SECRET). Required, set with --secret.", secret=True, required=True),
    Option("upstreamUrl", "string", "https://dashscope.aliyuncs.com/compatible-mode/v1/chat/completions", "OpenAI-compatible chat-completions URL the robot calls."),
    Option("model", "string", "qwen-plus", "Model name sent to the upstream API."),
    Option("instanceType", "string", "t3.medium", "EC2 instance type; t3.medium is the guide's 2 vCPU / 4 GiB."),
    Option("os", "string", "ubuntu-24.04", "Base image family: ubuntu-24.04, ubuntu-22.04, debian-12 or al2023."),
    Option("ami", "string", None, "Explicit AMI id (e.g. a prebuilt robot image); overrides os lookup."),
    Option("rootVolumeGiB", "integer", 30, "Encrypted gp3 root volume size in GiB (20-16384)."),
    Option("robotPort", "integer", 18789, "Port the robot listens on (the guide's 18789)."),
    Option("healthPath", "string", "/health", "Robot health endpoint path (load balancer and self-checks)."),
    Option("robotImage", "string", None, "Container image of an operator's own robot; unset runs the bundled robot/."),
    Option("exposeRobotPort", "boolean", True, "Open robotPort itself (the guide's http://IP:18789) besides nginx on 80/443; false keeps the robot on loopback behind nginx."),
    Option("basicAuth", "boolean", False, "Put nginx basic auth in front of the robot (password in Secrets Manager)."),
    Option("certificateArn", "string", None, "ACM certificate ARN for the ALB's HTTPS listener (balanced only)."),
    Option("tokenRotationDays", "integer", 30, "Access-token rotation period in days (the guide: monthly)."),
    Option("secretRecoveryDays", "integer", 7, "Secrets Manager recovery window: 0 deletes at once (dev stacks), else 7-30."),
    Option("instanceCount", "integer", 2, "Number of instances behind the ALB (balanced only, 2-20)."),
    Option("vpcId", "string", None, "VPC to deploy into. Default: the region's default VPC."),
    Option("subnetIds", "array", None, "Subnets to deploy into (with vpcId). Default: the VPC's subnets."),
    Option("sshPublicKey", "string", None, "The deployer's SSH public key. Default: a key generated with pulumi-tls."),
    Option("sshPrivateKey", "string", None, "Private key matching sshPublicKey, set with --secret.", secret=True),
    Option("gpu", "boolean", False, "Install the NVIDIA driver and give the robot the GPU (needs a g*/p* instanceType)."),
    Option("gpuDriver", "string", "nvidia-driver-550-server", "NVIDIA driver package installed when gpu is true."),
    Option("ddosRequestsPerSecond", "integer", 1000, "Per-client request rate limit (the guide's 1000 req/s)."),
    Option("ddosConnectionsPerIp", "integer", 500, "Per-client concurrent connection limit in nginx (the guide's 500)."),
    Option("ddosWindowSeconds", "integer", 60, "Detection window in seconds (the guide's 60); WAF accepts 60, 120, 300, 600."),
    Option("vrrpAdvertInterval", "number", 0.1, "VRRP advertisement interval in seconds (pair only, 0.01-40.95)."),
)
OPTIONS_BY_KEY = {o.key: o for o in OPTIONS}


@dataclass(frozen=True)
class Settings:
    topology: str
    allowed_cidrs: tuple[str, ...]
    ssh_cidrs: tuple[str, ...]
    allow_public_ssh: bool
    upstream_url: str
    model: str
    instance_type: str
    os: str
    ami: str | None
    root_volume_gib: int
    robot_port: int
    health_path: str
    robot_image: str | None
    expose_robot_port: bool
    basic_auth: bool
    certificate_arn: str | None
    token_rotation_days: int
    secret_recovery_days: int
    instance_count: int
    vpc_id: str | None
    subnet_ids: tuple[str, ...]
    ssh_public_key: str | None
    gpu: bool
    gpu_driver: str
    ddos_requests_per_second: int
    ddos_connections_per_ip: int
    ddos_window_seconds: int
    vrrp_advert_interval: float
    has_ssh_private_key: bool

    @property
    def ingress_ports(self) -> tuple[int, ...]:
        """Ports opened to allowedCidrs, in order."""
        return (80, 443, self.robot_port) if self.expose_robot_port else (80, 443)


class _Reader:
    """Turns raw config strings into typed values, recording a problem per bad key."""

    def __init__(self, raw: Mapping[str, str]):
        self.raw = raw
        self.problems: list[str] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{NAMESPACE}:{key}: {message}")

    def _value(self, key: str) -> str | None:
        value = self.raw.get(key)
        return None if value is None or value == "" else value

    def string(self, key: str, check: Callable[[str], str | None] | None = None) -> str | None:
        value = self._value(key)
        if value is None:
            return OPTIONS_BY_KEY[key].default
        error = check(value) if check else None
        if error:
            self.problem(key, f"{value!r} {error}")
        return value

    def choice(self, key: str, allowed: tuple[str, ...]) -> str:
        return self.string(key, lambda v: None if v in allowed else f"is not allowed; allowed: {', '.join(allowed)}")

    def boolean(self, key: str) -> bool:
        value = self._value(key)
        if value is None:
            return OPTIONS_BY_KEY[key].default
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        self.problem(key, f"{value!r} is not a boolean; allowed: true, false")
        return OPTIONS_BY_KEY[key].default

    def number(self, key: str, low: float, high: float, kind: type = int) -> Any:
        value = self._value(key)
        default = OPTIONS_BY_KEY[key].default
        if value is None:
            return default
        try:
            parsed = kind(value)
        except ValueError:
            self.problem(key, f"{value!r} is not {'an integer' if kind is int else 'a number'}; allowed: {low}-{high}")
            return default
        if not low <= parsed <= high:
            self.problem(key, f"{value!r} is out of range; allowed: {low}-{high}")
        return parsed

    def array(self, key: str) -> tuple[str, ...] | None:
        value = self._value(key)
        if value is None:
            return None
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, list) or not all(isinstance(item, str) for item in parsed):
            self.problem(
                key,
                f"{value!r} is not a list of strings; set items with: pulumi config set --path '{NAMESPACE}:{key}[0]' VALUE",
            )
            return None
        return tuple(parsed)


def _cidr_problem(cidr: str) -> str | None:
    try:
        ipaddress.ip_network(cidr, strict=True)
    except ValueError as exc:
        return f"{cidr!r} is not a valid CIDR ({exc}); allowed: e.g. 203.0.113.0/24 or 2001:db8::/32"
    return None


def _pattern(regex: str, allowed: str) -> Callable[[str], str | None]:
    compiled = re.compile(regex)
    return lambda v: None if compiled.fullmatch(v) else f"is not allowed; allowed: {allowed}"


def parse(raw: Mapping[str, str], secret_keys: frozenset[str], aws_region: str | None) -> Settings:
    """Validate raw config (keys without namespace, values as Pulumi holds them: strings).

    secret_keys: the full names ("robot:apiKey") of keys stored encrypted; aws_region: the
    aws:region config value (the AWS provider needs it).
    """
    r = _Reader(raw)
    for key in sorted(set(raw) - set(OPTIONS_BY_KEY)):
        close = difflib.get_close_matches(key, list(OPTIONS_BY_KEY), n=1)
        hint = f"; did you mean {NAMESPACE}:{close[0]}?" if close else "; the known keys are declared in Pulumi.yaml"
        r.problem(key, f"is not a known key{hint}")
    if not aws_region:
        r.problems.append("aws:region: required; set it with: pulumi config set aws:region us-east-1")

    topology = r.choice("topology", TOPOLOGIES)

    allowed = r.array("allowedCidrs")
    if allowed is None and "allowedCidrs" not in raw:
        r.problem("allowedCidrs", "required; set it with: pulumi config set --path 'robot:allowedCidrs[0]' 203.0.113.0/24")
    elif allowed is not None and not allowed:
        r.problem("allowedCidrs", "is empty; give at least one CIDR")
    for cidr in allowed or ():
        if (error := _cidr_problem(cidr)) is not None:
            r.problem("allowedCidrs", error)

    allow_public_ssh = r.boolean("allowPublicSsh")
    ssh = r.array("sshCidrs") or None  # empty (the Pulumi.yaml default) means "same as allowedCidrs"
    for cidr in ssh if ssh is not None else ():
        if (error := _cidr_problem(cidr)) is not None:
            r.problem("sshCidrs", error)
    for cidr in (ssh if ssh is not None else allowed) or ():
        if _cidr_problem(cidr) is None and ipaddress.ip_network(cidr) in PUBLIC_CIDRS and not allow_public_ssh:
            source = "sshCidrs" if ssh is not None else "allowedCidrs (the default for sshCidrs)"
            r.problem(
                "sshCidrs",
                f"{cidr!r} from {source} would open SSH to the whole internet; "
                "allowed: narrower CIDRs, or set robot:allowPublicSsh true to accept it",
            )

    for key in ("apiKey", "apiSecret"):
        if r._value(key) is None:
            r.problem(key, f"required; set it with: pulumi config set --secret {NAMESPACE}:{key} VALUE")
        elif f"{NAMESPACE}:{key}" not in secret_keys:
            r.problem(key, f"is stored in plain text; set it again with: pulumi config set --secret {NAMESPACE}:{key} VALUE")

    upstream_url = r.string("upstreamUrl", _pattern(r"https?://[A-Za-z0-9.-]+(:\d+)?(/[^\s]*)?", "an http(s):// URL"))
    model = r.string("model", _pattern(r"[A-Za-z0-9._:/-]{1,128}", "letters, digits and . _ : / -"))
    instance_type = r.string("instanceType", _pattern(r"[a-z][a-z0-9-]*\.[0-9]*[a-z0-9]+", "an EC2 instance type such as t3.medium"))
    os_family = r.choice("os", OSES)
    ami = r.string("ami", _pattern(r"ami-[0-9a-f]{8}([0-9a-f]{9})?", "an AMI id such as ami-0123456789abcdef0"))
    root_volume = r.number("rootVolumeGiB", 20, 16384)

    robot_port = r.number("robotPort", 1, 65535)
    if robot_port in RESERVED_PORTS:
        r.problem("robotPort", f"{robot_port} clashes with {RESERVED_PORTS[robot_port]}; allowed: 1-65535 except 22, 80, 443")
    health_path = r.string("healthPath", _pattern(r"/[A-Za-z0-9._~/-]*", "a path starting with / (letters, digits, . _ ~ / -)"))
    robot_image = r.string("robotImage", _pattern(r"[A-Za-z0-9][A-Za-z0-9._/:@-]*", "a container image reference such as registry/robot:1.2"))
    basic_auth = r.boolean("basicAuth")
    expose_robot_port = r.boolean("exposeRobotPort")
    if basic_auth and expose_robot_port:
        r.problem(
            "exposeRobotPort",
            f"true would let clients reach the robot on port {robot_port} without nginx's basic auth; "
            "set robot:exposeRobotPort false when robot:basicAuth is true",
        )
    certificate_arn = r.string(
        "certificateArn", _pattern(r"arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[A-Za-z0-9-]+", "an ACM certificate ARN")
    )
    token_rotation_days = r.number("tokenRotationDays", 1, 365)
    secret_recovery_days = r.number("secretRecoveryDays", 0, 30)
    if 0 < secret_recovery_days < 7:
        r.problem("secretRecoveryDays", f"{secret_recovery_days} is not allowed by Secrets Manager; allowed: 0 or 7-30")
    instance_count = r.number("instanceCount", 2, 20)

    vpc_id = r.string("vpcId", _pattern(r"vpc-[0-9a-f]{8}([0-9a-f]{9})?", "a VPC id such as vpc-0123456789abcdef0"))
    subnet_ids = r.array("subnetIds") or ()
    for subnet in subnet_ids:
        if not re.fullmatch(r"subnet-[0-9a-f]{8}([0-9a-f]{9})?", subnet):
            r.problem("subnetIds", f"{subnet!r} is not a subnet id; allowed: e.g. subnet-0123456789abcdef0")
    if subnet_ids and not vpc_id:
        r.problem("subnetIds", "needs robot:vpcId, the VPC the subnets belong to")
    if topology == "balanced" and len(subnet_ids) == 1:
        r.problem("subnetIds", "balanced needs subnets in at least two availability zones; give two or more")

    ssh_public_key = r.string("sshPublicKey", _pattern(r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp\d+) [A-Za-z0-9+/=]+( .*)?", "an OpenSSH public key line"))
    has_private = r._value("sshPrivateKey") is not None
    if has_private and f"{NAMESPACE}:sshPrivateKey" not in secret_keys:
        r.problem("sshPrivateKey", "is stored in plain text; set it again with: pulumi config set --secret robot:sshPrivateKey < key")
    if bool(ssh_public_key) != has_private:
        missing = "sshPrivateKey" if ssh_public_key else "sshPublicKey"
        r.problem(missing, "sshPublicKey and sshPrivateKey go together; set both or neither (neither generates a key)")

    gpu = r.boolean("gpu")
    if gpu and instance_type and not instance_type.startswith(GPU_FAMILIES):
        r.problem("instanceType", f"{instance_type!r} has no GPU but robot:gpu is true; allowed: a g*/p* type such as g4dn.xlarge")
    gpu_driver = r.string("gpuDriver", _pattern(r"[a-z0-9][a-z0-9.+-]*", "a package name such as nvidia-driver-550-server"))

    ddos_rps = r.number("ddosRequestsPerSecond", 1, 1_000_000)
    ddos_conn = r.number("ddosConnectionsPerIp", 1, 65535)
    ddos_window = r.number("ddosWindowSeconds", 1, 3600)
    if ddos_window not in WAF_WINDOWS:
        r.problem("ddosWindowSeconds", f"{ddos_window} is not a WAF evaluation window; allowed: {', '.join(map(str, WAF_WINDOWS))}")
    vrrp_advert = r.number("vrrpAdvertInterval", 0.01, 40.95, float)

    # Keys that only make sense for one topology: a non-default value elsewhere is a mistake.
    only_for = {"certificateArn": "balanced", "instanceCount": "balanced", "vrrpAdvertInterval": "pair"}
    for key, needed in only_for.items():
        value = r._value(key)
        option = OPTIONS_BY_KEY[key]
        is_default = value is None or (option.default is not None and _same(value, option.default))
        if not is_default and topology != needed:
            r.problem(key, f"only applies to topology {needed} (topology is {topology}); unset it or change robot:topology")

    if r.problems:
        raise ConfigError(r.problems)
    return Settings(
        topology=topology,
        allowed_cidrs=allowed,
        ssh_cidrs=ssh if ssh is not None else allowed,
        allow_public_ssh=allow_public_ssh,
        upstream_url=upstream_url,
        model=model,
        instance_type=instance_type,
        os=os_family,
        ami=ami,
        root_volume_gib=root_volume,
        robot_port=robot_port,
        health_path=health_path,
        robot_image=robot_image,
        expose_robot_port=expose_robot_port,
        basic_auth=basic_auth,
        certificate_arn=certificate_arn,
        token_rotation_days=token_rotation_days,
        secret_recovery_days=secret_recovery_days,
        instance_count=instance_count,
        vpc_id=vpc_id,
        subnet_ids=subnet_ids,
        ssh_public_key=ssh_public_key,
        gpu=gpu,
        gpu_driver=gpu_driver,
        ddos_requests_per_second=ddos_rps,
        ddos_connections_per_ip=ddos_conn,
        ddos_window_seconds=ddos_window,
        vrrp_advert_interval=vrrp_advert,
        has_ssh_private_key=has_private,
    )


def _same(raw: str, default: Any) -> bool:
    try:
        return type(default)(raw) == default
    except ValueError:
        return False


def load() -> Settings:
    """Read the stack's config (all of it, so typos in key names are caught) and parse it."""
    from pulumi.runtime import config as runtime_config

    prefix = f"{NAMESPACE}:"
    everything = dict(runtime_config.get_config_env())
    everything.update(runtime_config.CONFIG.get())
    raw = {k[len(prefix):]: str(v) for k, v in everything.items() if k.startswith(prefix)}
    secret_keys = frozenset(runtime_config._SECRET_KEYS.get()) | frozenset(runtime_config.get_config_secret_keys_env())
    return parse(raw, secret_keys, aws_region=pulumi.Config("aws").get("region"))
