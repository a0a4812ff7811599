"""One Pulumi mocks harness for every unit test.

`run(config, secrets)` executes the real `__main__.py` under mocks and returns a `Run` with
every registered resource (type, name, parent, options, inputs with secret markers kept) and
every stack output resolved, with whether it is secret. Tests assert on that plain data, so no
check hides inside an `apply` that might never run; `Run.resource()` fails loudly when what a
test looks for was not registered at all.

The mocks give each resource type and invoke the program uses realistic state (ids, ARNs,
addresses); an unknown type or invoke raises, so a new resource cannot slip by unmodelled.
Outputs listed in a resource's additionalSecretOutputs come back secret, and an input that was
secret stays secret in the state, as the engine would do it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import runpy
import shlex
import string
from dataclasses import dataclass, field
from typing import Any, Callable

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ACCOUNT = "123456789012"
REGION = "us-east-1"
SECRET_SIG = {rpc._special_sig_key: rpc._special_secret_sig}

# The documented minimum: what README says an operator must set.
REQUIRED_CONFIG = {"allowedCidrs": '["203.0.113.0/24"]'}
REQUIRED_SECRETS = {"apiKey": "sk-test-APIKEY-0123456789", "apiSecret": "test-APISECRET-9876543210"}


def is_secret(value: Any) -> bool:
    return rpc.is_rpc_secret(value)


def plain(value: Any) -> Any:
    """The value with secret markers removed (recursively)."""
    if is_secret(value):
        return plain(value["value"])
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


@dataclass
class Registration:
    type: str
    name: str
    urn: str
    parent: str
    inputs: dict[str, Any]  # secret values still wrapped
    state: dict[str, Any]
    id: str
    dependencies: list[str]
    ignore_changes: list[str]
    replace_on_changes: list[str]
    additional_secret_outputs: list[str]
    delete_before_replace: bool
    custom: bool

    @property
    def props(self) -> dict[str, Any]:
        return plain(self.inputs)


class RobotMocks(pulumi_mocks.Mocks):
    def __init__(self, overrides: dict[str, Callable[[dict], dict]] | None = None):
        self._ids = itertools.count(1)
        self.overrides = overrides or {}

    def _hex(self, width: int = 17) -> str:
        return f"{next(self._ids):0{width}x}"

    def new_resource(self, args: pulumi_mocks.MockResourceArgs):
        inputs = dict(args.inputs)
        p = plain(inputs)
        t = args.typ
        h = self._hex()
        arn = lambda service, kind: f"arn:aws:{service}:{REGION}:{ACCOUNT}:{kind}"  # noqa: E731
        if not args.custom:
            return f"{args.name}-id", inputs
        if t == "aws:ec2/instance:Instance":
            n = int(h, 16) % 200 + 10
            state = {
                "arn": arn("ec2", f"instance/i-{h}"),
                "privateIp": p.get("privateIp") or f"172.31.16.{n}",
                "primaryNetworkInterfaceId": f"eni-{h}",
                "availabilityZone": "us-east-1a",
                "instanceState": "running",
            }
            rid = f"i-{h}"
        elif t == "aws:ec2/eip:Eip":
            n = int(h, 16) % 200 + 10
            state = {"publicIp": f"198.51.100.{n}", "allocationId": f"eipalloc-{h}", "domain": "vpc"}
            rid = f"eipalloc-{h}"
        elif t == "aws:ec2/securityGroup:SecurityGroup":
            rid = f"sg-{h}"
            state = {"arn": arn("ec2", f"security-group/{rid}")}
        elif t in ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"):
            rid = f"sgr-{h}"
            state = {"securityGroupRuleId": rid}
        elif t == "aws:ec2/keyPair:KeyPair":
            name = p.get("keyName") or f"{p.get('keyNamePrefix', 'key-')}{h}"
            rid, state = name, {"keyName": name, "arn": arn("ec2", f"key-pair/{name}")}
        elif t == "aws:secretsmanager/secret:Secret":
            name = p.get("name") or f"{p.get('namePrefix', 'secret-')}{h}"
            rid = arn("secretsmanager", f"secret:{name}-AbCdEf")
            state = {"arn": rid, "name": name}
        elif t == "aws:secretsmanager/secretVersion:SecretVersion":
            version = f"v-{h}"
            rid, state = f"{p['secretId']}|{version}", {"versionId": version, "arn": p["secretId"]}
        elif t == "aws:iam/policy:Policy":
            name = p.get("name") or f"{args.name}-{h[-7:]}"
            rid = f"arn:aws:iam::{ACCOUNT}:policy/{name}"
            state = {"arn": rid, "name": name, "policyId": f"ANPA{h.upper()}"}
        elif t == "aws:iam/role:Role":
            name = p.get("name") or f"{args.name}-{h[-7:]}"
            rid, state = name, {"arn": f"arn:aws:iam::{ACCOUNT}:role/{name}", "name": name, "uniqueId": f"AROA{h.upper()}"}
        elif t == "aws:iam/instanceProfile:InstanceProfile":
            name = p.get("name") or f"{args.name}-{h[-7:]}"
            rid, state = name, {"arn": f"arn:aws:iam::{ACCOUNT}:instance-profile/{name}", "name": name}
        elif t == "aws:iam/rolePolicyAttachment:RolePolicyAttachment":
            rid, state = f"{p['role']}-{h}", {}
        elif t == "random:index/randomPassword:RandomPassword":
            alphabet = string.ascii_letters + string.digits
            seed = int(h, 16)
            result = "".join(alphabet[(seed * 7919 + i * 104729) % len(alphabet)] for i in range(int(p["length"])))
            rid, state = "none", {"result": result, "bcryptHash": "$2a$10$mock"}
        elif t == "tls:index/privateKey:PrivateKey":
            rid = h
            state = {
                "privateKeyOpenssh": f"-----BEGIN OPENSSH PRIVATE KEY-----\nMOCK{h}\n-----END OPENSSH PRIVATE KEY-----\n",
                "privateKeyPem": "mock-pem",
                "publicKeyOpenssh": f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{h} generated\n",
                "publicKeyFingerprintSha256": f"SHA256:{h}",
            }
        elif t == "aws:lb/loadBalancer:LoadBalancer":
            rid = arn("elasticloadbalancing", f"loadbalancer/app/{args.name}/{h[-16:]}")
            state = {"arn": rid, "dnsName": f"{args.name}-{h[-8:]}.{REGION}.elb.amazonaws.com", "zoneId": "Z35SXDOTRQ7X7K"}
        elif t == "aws:lb/targetGroup:TargetGroup":
            rid = arn("elasticloadbalancing", f"targetgroup/{args.name}/{h[-16:]}")
            state = {"arn": rid, "arnSuffix": f"targetgroup/{args.name}/{h[-16:]}"}
        elif t == "aws:lb/listener:Listener":
            rid = arn("elasticloadbalancing", f"listener/app/{h}")
            state = {"arn": rid}
        elif t in ("aws:lb/targetGroupAttachment:TargetGroupAttachment", "aws:wafv2/webAclAssociation:WebAclAssociation"):
            rid, state = f"{args.name}-{h}", {}
        elif t == "aws:wafv2/webAcl:WebAcl":
            rid = f"{h[:8]}-{h[8:12]}-4000-8000-{h[-12:]}"
            state = {"arn": arn("wafv2", f"regional/webacl/{args.name}/{rid}"), "capacity": 2}
        elif t == "command:remote:Command":
            rid, state = f"{args.name}-{h}", {"stdout": "", "stderr": ""}
        elif t == "command:remote:CopyToRemote":
            rid, state = f"{args.name}-{h}", {}
        elif t in self.overrides:
            rid, state = f"{args.name}-{h}", self.overrides[t](p)
        else:
            raise NotImplementedError(f"harness has no mock state for resource type {t}")
        return rid, {**inputs, **state}

    def call(self, args: pulumi_mocks.MockCallArgs):
        tok, a = args.token, plain(args.args)
        if tok == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws", "reverseDnsPrefix": "com.amazonaws"}
        if tok == "aws:index/getRegion:getRegion":
            return {"region": REGION, "name": REGION, "id": REGION, "endpoint": f"ec2.{REGION}.amazonaws.com"}
        if tok == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/deployer", "id": ACCOUNT, "userId": "AIDA"}
        if tok == "aws:ec2/getVpc:getVpc":
            vpc = a.get("id") or "vpc-0def0def0def0def0"
            return {"id": vpc, "cidrBlock": "172.31.0.0/16", "default": "id" not in a, "arn": f"arn:aws:ec2:{REGION}:{ACCOUNT}:vpc/{vpc}"}
        if tok == "aws:ec2/getSubnets:getSubnets":
            return {"ids": ["subnet-0aaa0aaa0aaa0aaa0", "subnet-0bbb0bbb0bbb0bbb0", "subnet-0ccc0ccc0ccc0ccc0"], "id": REGION}
        if tok == "aws:ec2/getSubnet:getSubnet":
            index = "abc".index(a["id"][8]) if a["id"][8] in "abc" else 0
            return {"id": a["id"], "cidrBlock": f"172.31.{index * 16}.0/20", "availabilityZone": f"{REGION}{'abc'[index]}", "vpcId": "vpc-0def0def0def0def0"}
        if tok == "aws:ssm/getParameter:getParameter":
            return {"name": a["name"], "value": "ami-0123456789abcdef0", "type": "String", "id": a["name"]}
        raise NotImplementedError(f"harness has no mock for invoke {tok}")


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """MockMonitor that records every registration with its options, and secret outputs."""

    def __init__(self, mocks: RobotMocks):
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        inputs = rpc.deserialize_properties(request.object)
        state = rpc.deserialize_properties(response.object)
        for key in request.additionalSecretOutputs:
            if key in state:
                state[key] = rpc.wrap_rpc_secret(state[key])
        response.object.CopyFrom(_sync_await(rpc.serialize_properties(state, {})))
        self.registrations.append(
            Registration(
                type=request.type,
                name=request.name,
                urn=response.urn,
                parent=request.parent,
                inputs=inputs,
                state=state,
                id=response.id,
                dependencies=list(request.dependencies),
                ignore_changes=list(request.ignoreChanges),
                replace_on_changes=list(request.replaceOnChanges),
                additional_secret_outputs=list(request.additionalSecretOutputs),
                delete_before_replace=request.deleteBeforeReplace,
                custom=request.custom,
            )
        )
        return response


@dataclass
class Output:
    value: Any
    secret: bool


@dataclass
class Run:
    registrations: list[Registration]
    outputs: dict[str, Output] = field(default_factory=dict)
    error: BaseException | None = None

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_]

    def resource(self, type_: str, name: str | None = None) -> Registration:
        found = [r for r in self.of_type(type_) if name is None or r.name == name]
        assert len(found) == 1, f"expected one {type_} named {name!r}, found {[r.name for r in self.of_type(type_)]}"
        return found[0]

    def by_urn(self, urn: str) -> Registration:
        return next(r for r in self.registrations if r.urn == urn)

    def children(self, parent: Registration) -> list[Registration]:
        return [r for r in self.registrations if r.parent == parent.urn]


def settings_env(run: "Run", bootstrap: str) -> dict[str, str]:
    """The settings.env a Bootstrap ships (its run step's third trigger), values unquoted."""
    text = run.resource("command:remote:Command", f"{bootstrap}-run").props["triggers"][2]
    pairs = (line.split("=", 1) for line in text.splitlines())
    return {key: (shlex.split(value) or [""])[0] for key, value in pairs}


def _resolve_outputs(stack: Any) -> dict[str, Output]:
    async def resolve() -> dict[str, Output]:
        result = {}
        for name, value in stack.outputs.items():
            out = pulumi.Output.from_input(value)
            result[name] = Output(await out.future(), await out.is_secret())
        return result

    return _sync_await(resolve())


_cache: dict[tuple, Run] = {}


def run(config: dict[str, str] | None = None, secrets: dict[str, str] | None = None, *, fresh: bool = False, **options: Any) -> Run:
    """`execute()`, with identical program runs shared between tests (they only read a Run).

    `fresh=True` for a test that changes something outside the config (e.g. the clock); runs
    of another program or with other mocks are never shared.
    """
    if fresh or options.get("program") is not None or options.get("mocks") is not None:
        return execute(config, secrets, **options)
    key = (tuple(sorted((config or {}).items())), tuple(sorted((secrets or {}).items())), tuple(sorted(options.items())))
    if key not in _cache:
        _cache[key] = execute(config, secrets, **options)
    return _cache[key]


def execute(
    config: dict[str, str] | None = None,
    secrets: dict[str, str] | None = None,
    *,
    base: bool = True,
    program: Callable[[], None] | None = None,
    aws_region: str | None = REGION,
    mocks: RobotMocks | None = None,
    stack: str = "dev",
) -> Run:
    """Run the program (default: __main__.py) under mocks with robot:* config.

    `base` adds the documented required keys first. Errors are captured in Run.error, not
    raised, so tests can assert that nothing was registered before the error.
    """
    values = {**(REQUIRED_CONFIG if base else {}), **(config or {})}
    secret_values = {**(REQUIRED_SECRETS if base else {}), **(secrets or {})}
    all_config = {f"robot:{k}": v for k, v in {**values, **secret_values}.items()}
    if aws_region:
        all_config["aws:region"] = aws_region
    mocks = mocks or RobotMocks()
    monitor = RecordingMonitor(mocks)
    asyncio.set_event_loop(asyncio.new_event_loop())
    # A fresh root stack per run: otherwise outputs exported by an earlier run would linger.
    pulumi.runtime.settings.ROOT.set(None)
    pulumi_mocks.set_mocks(mocks, project="robot", stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(all_config, [f"robot:{k}" for k in secret_values])
    root = pulumi.runtime.settings.get_root_resource()

    def body() -> None:
        if program is not None:
            program()
        else:
            cwd = os.getcwd()
            os.chdir(ROOT)
            try:
                runpy.run_path(os.path.join(ROOT, "__main__.py"), run_name="__main__")
            finally:
                os.chdir(cwd)

    result = Run(monitor.registrations)
    try:
        _sync_await(run_pulumi_func(body))
        result.outputs = _resolve_outputs(root)
    except Exception as exc:  # the program's error is the test's subject
        result.error = exc
    return result
