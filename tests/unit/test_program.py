"""The whole program on the dev stack's config: what it builds, exports and never leaks."""

import json
import os

import yaml

import harness


def dev_config():
    with open(os.path.join(harness.ROOT, "Pulumi.dev.yaml")) as fh:
        stack = yaml.safe_load(fh)["config"]
    values = {}
    for key, value in stack.items():
        if key.startswith("robot:"):
            values[key[len("robot:"):]] = json.dumps(value) if isinstance(value, list) else str(value)
    return values, stack["aws:region"]


def test_dev_stack_builds_the_single_topology():
    values, region = dev_config()
    run = harness.run(values, base=False, secrets=harness.REQUIRED_SECRETS, aws_region=region)
    assert run.error is None, run.error
    counts = {}
    for r in run.registrations:
        counts[r.type] = counts.get(r.type, 0) + 1
    assert counts["aws:ec2/instance:Instance"] == 1
    assert counts["aws:ec2/eip:Eip"] == 1
    assert counts["aws:secretsmanager/secret:Secret"] == 1
    assert counts["aws:ec2/securityGroup:SecurityGroup"] == 1
    assert run.resource("aws:secretsmanager/secret:Secret").props["recoveryWindowInDays"] == 0


def test_outputs():
    run = harness.run()
    assert run.error is None, run.error
    out = run.outputs
    ip = run.resource("aws:ec2/eip:Eip").state["publicIp"]
    assert out["publicIp"].value == ip
    assert out["endpointUrl"].value == f"http://{ip}/api/v1/chat"
    assert out["healthUrl"].value == f"http://{ip}/health"
    assert out["egressIps"].value == [ip]
    assert out["instanceId"].value == run.resource("aws:ec2/instance:Instance").id
    assert out["secretArn"].value == run.resource("aws:secretsmanager/secret:Secret").state["arn"]
    assert out["sshCommand"].value == f"ssh -i robot-deployer.key ubuntu@{ip}"
    assert out["accessToken"].secret and len(out["accessToken"].value) == 32
    assert out["sshPrivateKey"].secret
    for name in ("publicIp", "endpointUrl", "healthUrl", "instanceId", "secretArn", "egressIps", "sshCommand"):
        assert not out[name].secret, name


def _plain_strings(value, path=""):
    """Every string leaf that is NOT inside a secret marker, with its path."""
    if harness.is_secret(value):
        return
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _plain_strings(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _plain_strings(v, f"{path}[{i}]")
    elif isinstance(value, str):
        yield path, value


def test_no_secret_in_plain_text_anywhere():
    run = harness.run({"basicAuth": "true", "exposeRobotPort": "false", "sshPublicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIoperator op@laptop"},
                      {"sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nOPERATORKEY\n"})
    assert run.error is None, run.error
    passwords = [r.state["result"] for r in run.of_type("random:index/randomPassword:RandomPassword")]
    assert len(passwords) == 2  # the token and the basic-auth password
    needles = [*harness.REQUIRED_SECRETS.values(), *(harness.plain(p) for p in passwords), "OPERATORKEY"]
    # The check is not vacuous: the secrets do reach the program's resources, wrapped as secrets.
    version = run.resource("aws:secretsmanager/secretVersion:SecretVersion")
    assert harness.is_secret(version.inputs["secretString"])
    document = json.loads(harness.plain(version.inputs["secretString"]))
    assert document["API_KEY"] == harness.REQUIRED_SECRETS["apiKey"]
    assert document["ROBOT_TOKEN"] == harness.plain(passwords[0]) or document["ROBOT_TOKEN"] == harness.plain(passwords[1])
    leaks = []
    for r in run.registrations:
        for where, text in [*_plain_strings(r.inputs, "inputs"), *_plain_strings(r.state, "state")]:
            leaks += [(r.type, r.name, where) for needle in needles if needle in text]
    for name, out in run.outputs.items():
        if not out.secret:
            leaks += [("output", name, "") for needle in needles if needle in json.dumps(out.value)]
    assert leaks == []


def test_components_use_namespaced_types_and_parent_their_children():
    run = harness.run()
    components = [r for r in run.registrations if not r.custom]
    assert {r.type for r in components} >= {"robot:aws:ApiKeys", "robot:aws:SecurityGroup", "robot:aws:RobotInstance", "robot:aws:DeployerKey"}
    for component in components:
        assert component.type.startswith("robot:aws:")
        children = run.children(component)
        assert children, component.type
        for child in children:
            assert child.name.startswith(component.name), (component.name, child.name)
    # Every cloud resource belongs to a component: nothing is registered loose on the stack.
    component_urns = {c.urn for c in components}
    assert all(r.parent in component_urns for r in run.registrations if r.custom)


def test_every_taggable_resource_is_tagged():
    run = harness.run()
    tagged = [r for r in run.registrations if r.custom and "tags" in r.props]
    assert len(tagged) >= 10
    for r in tagged:
        tags = r.props["tags"]
        assert tags["Project"] == "robot" and tags["Stack"] == "dev" and tags["Role"], r.name
