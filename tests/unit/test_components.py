"""Each component's resources and their properties."""

import json

import harness
from components import api_keys, images, policies, security_group

INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"


# --- SecurityGroup ---------------------------------------------------------------------

def test_rules_whitelist_service_ports_and_ssh():
    rules = security_group.rules(("203.0.113.0/24", "2001:db8::/32"), ("198.51.100.7/32",), (80, 443, 18789))
    opened = {(r.port, r.cidr) for r in rules}
    assert opened == {
        (80, "203.0.113.0/24"), (80, "2001:db8::/32"), (443, "203.0.113.0/24"), (443, "2001:db8::/32"),
        (18789, "203.0.113.0/24"), (18789, "2001:db8::/32"), (22, "198.51.100.7/32"),
    }
    assert all(r.description for r in rules)
    assert not any(r.protocol == "112" for r in rules)


def test_security_group_resources():
    run = harness.run({"allowedCidrs": '["203.0.113.0/24", "2001:db8::/32"]', "sshCidrs": '["198.51.100.7/32"]'})
    assert run.error is None, run.error
    sg = run.resource("aws:ec2/securityGroup:SecurityGroup")
    assert "ingress" not in sg.props and "egress" not in sg.props  # rules are separate resources only
    ingress = run.of_type(INGRESS)
    assert len(ingress) == 7
    for rule in ingress:
        p = rule.props
        assert p["securityGroupId"] == sg.id and p["description"] and p["ipProtocol"] == "tcp"
        assert p["fromPort"] == p["toPort"]
    ssh = [r.props for r in ingress if r.props["fromPort"] == 22]
    assert [p["cidrIpv4"] for p in ssh] == ["198.51.100.7/32"]
    v6 = [r.props for r in ingress if "cidrIpv6" in r.props]
    closed = harness.run({"exposeRobotPort": "false"})
    assert {r.props["fromPort"] for r in closed.of_type(INGRESS)} == {22, 80, 443}
    assert {p["fromPort"] for p in v6} == {80, 443, 18789}
    assert {r.props.get("cidrIpv4") or r.props.get("cidrIpv6") for r in run.of_type(EGRESS)} == {"0.0.0.0/0", "::/0"}


# --- ApiKeys ---------------------------------------------------------------------------

def test_token_rotation_period_changes_only_at_the_boundary():
    day = 86400
    start = 20000 * day  # a period boundary for 30-day periods (20000 is not; pick one that is)
    start = (start // (30 * day)) * 30 * day
    assert api_keys.rotation_period(start, 30) == api_keys.rotation_period(start + 30 * day - 1, 30)
    assert api_keys.rotation_period(start + 30 * day, 30) == api_keys.rotation_period(start, 30) + 1


def test_token_keepers_follow_the_rotation_period(monkeypatch):
    import time

    day = 86400
    tokens = []
    for now in (600 * 30 * day, 600 * 30 * day + 29 * day, 601 * 30 * day):
        monkeypatch.setattr(time, "time", lambda now=now: now)
        run = harness.run(fresh=True)
        assert run.error is None, run.error
        tokens.append(run.resource("random:index/randomPassword:RandomPassword", "keys-token").props)
    assert tokens[0] == tokens[1]  # inside one period: no change, no new token
    assert tokens[2]["keepers"] != tokens[1]["keepers"]  # next period: replaced
    token = tokens[0]
    assert token["length"] == 32 and token["special"] is False
    assert token.get("upper", True) and token.get("lower", True) and token.get("numeric", True)


def test_secret_document_and_recovery_window():
    run = harness.run({"basicAuth": "true", "exposeRobotPort": "false", "secretRecoveryDays": "0"})
    assert run.error is None, run.error
    secret = run.resource("aws:secretsmanager/secret:Secret")
    assert secret.props["recoveryWindowInDays"] == 0
    assert secret.props["namePrefix"] == "robot-dev-"
    version = run.resource("aws:secretsmanager/secretVersion:SecretVersion")
    assert version.props["secretId"] == secret.id
    document = json.loads(version.props["secretString"])
    assert set(document) == {"API_KEY", "API_SECRET", "ROBOT_TOKEN", "BASIC_AUTH_USER", "BASIC_AUTH_PASSWORD"}
    assert document["API_SECRET"] == harness.REQUIRED_SECRETS["apiSecret"]
    assert len(document["ROBOT_TOKEN"]) == 32 and document["ROBOT_TOKEN"].isalnum()


def test_read_policy_allows_only_get_secret_value_on_the_secret():
    run = harness.run()
    secret_arn = run.resource("aws:secretsmanager/secret:Secret").state["arn"]
    read = json.loads(run.resource("aws:iam/policy:Policy", "keys-read").props["policy"])
    assert read["Statement"] == [{"Sid": "ReadRobotSecret", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": secret_arn}]
    write = json.loads(run.resource("aws:iam/policy:Policy", "keys-token-write").props["policy"])
    assert [(s["Action"], s["Resource"]) for s in write["Statement"]] == [("secretsmanager:PutSecretValue", secret_arn)]


# --- RobotInstance -----------------------------------------------------------------------

def test_instance_is_hardened():
    run = harness.run({"rootVolumeGiB": "40"})
    assert run.error is None, run.error
    inst = run.resource("aws:ec2/instance:Instance")
    p = inst.props
    assert p["instanceType"] == "t3.medium"
    assert p["metadataOptions"] == {"httpEndpoint": "enabled", "httpTokens": "required", "httpPutResponseHopLimit": 1}
    root = p["rootBlockDevice"]
    assert (root["volumeType"], root["volumeSize"], root["encrypted"], root["deleteOnTermination"]) == ("gp3", 40, True, True)
    assert p["ami"] == "ami-0123456789abcdef0"
    assert "ami" in inst.ignore_changes  # a newer image never replaces a running host
    assert p["vpcSecurityGroupIds"] == [run.resource("aws:ec2/securityGroup:SecurityGroup").id]
    assert p["keyName"] == run.resource("aws:ec2/keyPair:KeyPair").state["keyName"]
    assert p["iamInstanceProfile"] == run.resource("aws:iam/instanceProfile:InstanceProfile").state["name"]
    assert "userData" not in p  # nothing (and certainly no secret) travels in user data
    eip = run.resource("aws:ec2/eip:Eip")
    assert eip.props["instance"] == inst.id and eip.props["domain"] == "vpc"


def test_instance_role_trusts_ec2_and_carries_only_its_policies():
    run = harness.run()
    role = run.resource("aws:iam/role:Role")
    trust = json.loads(role.props["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    attached = sorted(a.props["policyArn"] for a in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment"))
    policies_by_name = {p.name: p.state["arn"] for p in run.of_type("aws:iam/policy:Policy")}
    assert attached == sorted(["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore", policies_by_name["keys-read"], policies_by_name["keys-token-write"]])


def test_arns_follow_the_partition():
    assert policies.managed_policy_arn("aws-cn", "AmazonSSMManagedInstanceCore") == "arn:aws-cn:iam::aws:policy/AmazonSSMManagedInstanceCore"
    assert json.loads(policies.assume_role("amazonaws.com.cn"))["Statement"][0]["Principal"]["Service"] == "ec2.amazonaws.com.cn"


def test_image_lookup_per_os_and_architecture():
    assert images.image_parameter("ubuntu-24.04", "t3.medium").endswith("/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id")
    assert images.image_parameter("al2023", "t4g.medium").endswith("al2023-ami-kernel-default-arm64")
    assert images.image_parameter("debian-12", "g5g.xlarge").endswith("bookworm/latest/arm64")
    assert images.architecture("g4dn.xlarge") == "amd64"
    assert [images.ssh_user(o) for o in ("ubuntu-22.04", "debian-12", "al2023")] == ["ubuntu", "admin", "ec2-user"]


def test_explicit_ami_skips_the_lookup():
    run = harness.run({"ami": "ami-0fedcba9876543210"})
    assert run.resource("aws:ec2/instance:Instance").props["ami"] == "ami-0fedcba9876543210"


# --- DeployerKey --------------------------------------------------------------------------

def test_generated_deployer_key():
    run = harness.run()
    key = run.resource("tls:index/privateKey:PrivateKey")
    assert key.props["algorithm"] == "ED25519"
    assert "privateKeyOpenssh" in key.additional_secret_outputs
    pair = run.resource("aws:ec2/keyPair:KeyPair")
    assert pair.props["publicKey"] == key.state["publicKeyOpenssh"]


def test_operator_key_is_used_when_given():
    public = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIoperator op@laptop"
    run = harness.run({"sshPublicKey": public}, {"sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nX\n"})
    assert run.error is None, run.error
    assert run.of_type("tls:index/privateKey:PrivateKey") == []
    assert run.resource("aws:ec2/keyPair:KeyPair").props["publicKey"] == public
    assert run.outputs["sshPrivateKey"].secret
