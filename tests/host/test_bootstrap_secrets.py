"""The secret fetcher and init_token.sh against Secrets Manager served by moto in the lab:
change detection, missing keys, retries with backoff, token rotation. No value is ever printed."""

from __future__ import annotations

import json
import shutil
import string
import tempfile

import pytest
from aws_emulator import CREDENTIALS, AwsEmulator
from netns import Lab, require_root
from node import PYTHON, SCRIPTS, Node

NODE_IP, AWS_IP = "10.77.0.11", "10.77.0.254"
SECRET = {
    "API_KEY": "ak-rotate-0123456789",
    "API_SECRET": "as-rotate-abcdefghij",
    "ROBOT_TOKEN": "R" * 16 + "0123456789abcdef",
    "BASIC_AUTH_USER": "operator",
    "BASIC_AUTH_PASSWORD": "pw-rotate-Zz9",
}


@pytest.fixture(scope="module")
def lab():
    require_root()
    with Lab() as lab:
        node = lab.add_host("node", NODE_IP)
        aws = AwsEmulator(lab.add_host("aws", AWS_IP))
        aws.start()
        yield node, aws


@pytest.fixture
def node_dir():
    path = tempfile.mkdtemp(prefix="robot-node-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def make_node(node_dir, aws, secret_id, **settings) -> Node:
    return Node(node_dir, settings={"ROBOT_SECRET_ID": secret_id, **settings},
                env={**CREDENTIALS, "AWS_ENDPOINT_URL": aws.endpoint})


def no_value_in(text: str, values) -> bool:
    return not [v for v in values if v in text]


def test_fetch_rewrites_only_what_changed(lab, node_dir):
    host, aws = lab
    sm = aws.client("secretsmanager")
    arn = sm.create_secret(Name="robot/changes", SecretString=json.dumps(SECRET))["ARN"]
    node = make_node(node_dir, aws, arn, ROBOT_BASIC_AUTH="true")
    node.bootstrap("--only", "base", "--only", "secrets", host=host)
    htpasswd = node.path("/etc/nginx/robot.htpasswd").read_text()

    rotated = dict(SECRET, API_KEY="ak-rotate-NEW-987654")
    sm.put_secret_value(SecretId=arn, SecretString=json.dumps(rotated))
    result = node.bootstrap("--only", "secrets", host=host)
    assert "updated .env" in result.stdout and "robot.htpasswd" not in result.stdout, result.stdout
    assert "API_KEY=ak-rotate-NEW-987654" in node.path("/opt/robot/config/.env").read_text()
    # Same password: the salted hash is kept, not re-salted on every run.
    assert node.path("/etc/nginx/robot.htpasswd").read_text() == htpasswd
    assert no_value_in(result.stdout + result.stderr, rotated.values())


def test_missing_keys_are_named_and_nothing_is_written(lab, node_dir):
    host, aws = lab
    partial = {"API_KEY": SECRET["API_KEY"], "API_SECRET": SECRET["API_SECRET"]}
    arn = aws.client("secretsmanager").create_secret(Name="robot/partial", SecretString=json.dumps(partial))["ARN"]
    node = make_node(node_dir, aws, arn)
    result = node.bootstrap("--only", "base", "--only", "secrets", host=host, check=False)
    assert result.returncode != 0
    assert "the secret lacks ROBOT_TOKEN" in result.stderr and "40-secrets: FAILED" in result.stderr
    assert no_value_in(result.stdout + result.stderr, partial.values())
    assert not node.path("/opt/robot/config/.env").exists()


def test_unreachable_secrets_manager_is_retried_with_backoff_then_fails(lab, node_dir):
    host, aws = lab
    node = Node(node_dir, settings={"ROBOT_SECRET_ID": "robot/any"},
                env={**CREDENTIALS, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "ROBOT_SECRET_ATTEMPTS": "3",
                     "ROBOT_SECRET_BACKOFF": "0.01", "AWS_MAX_ATTEMPTS": "1"})
    node.path("/opt/robot/config").mkdir(parents=True)
    result = host.run([PYTHON, str(SCRIPTS / "robot_secrets.py"), "fetch", "--settings", str(node.settings_file),
                       "--env-file", str(node.path("/opt/robot/config/.env")), "--owner", "root:root"],
                      check=False, env=node.env())
    assert result.returncode == 1
    retries = [line for line in result.stderr.splitlines() if "retrying in" in line]
    assert [line.split("retrying in ")[1] for line in retries] == ["0.01s", "0.02s"]
    assert "EndpointConnectionError after 3 attempts" in result.stderr


def test_init_token_stores_a_new_token_and_never_prints_it(lab, node_dir):
    host, aws = lab
    sm = aws.client("secretsmanager")
    arn = sm.create_secret(Name="robot/rotate", SecretString=json.dumps(SECRET))["ARN"]
    node = make_node(node_dir, aws, arn)
    node.bootstrap("--only", "base", "--only", "secrets", host=host)
    aws.reset_calls()

    result = host.run(["bash", str(node.path("/opt/robot/bin/init_token.sh"))], check=False, env=node.env())
    assert result.returncode == 0, result.stderr
    stored = json.loads(sm.get_secret_value(SecretId=arn)["SecretString"])
    token = stored["ROBOT_TOKEN"]
    assert len(token) == 32 and set(token) <= set(string.ascii_letters + string.digits) and token != SECRET["ROBOT_TOKEN"]
    assert {k: v for k, v in stored.items() if k != "ROBOT_TOKEN"} == {k: v for k, v in SECRET.items() if k != "ROBOT_TOKEN"}
    assert f"ROBOT_TOKEN={token}" in node.path("/opt/robot/config/.env").read_text().splitlines()
    assert token not in result.stdout + result.stderr and "Secrets Manager" in result.stdout
    assert ("secretsmanager", "PutSecretValue") in [c[:2] for c in aws.calls()]


def test_fetch_uses_the_instance_role_from_imdsv2(lab, node_dir):
    """No credentials in the environment: boto3 gets the role's from (fake) IMDSv2, as on EC2."""
    host, aws = lab
    arn = aws.client("secretsmanager").create_secret(Name="robot/imds", SecretString=json.dumps(SECRET))["ARN"]
    imds = host.popen([PYTHON, str(SCRIPTS.parent / "tests/host/fake_imds.py"), "--port", "8169", "--region", "us-east-1",
                       "--instance-id", "i-0robot", "--mac", "0e:00:00:00:00:01", "--eni", "eni-0robot",
                       "--local-ipv4", NODE_IP])
    node = Node(node_dir, settings={"ROBOT_SECRET_ID": arn},
                env={"AWS_ENDPOINT_URL": aws.endpoint, "ROBOT_IMDS_ENDPOINT": "http://127.0.0.1:8169"})
    env = node.env()
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        env.pop(key, None)
    try:
        result = host.run(["bash", str(SCRIPTS / "bootstrap.sh"), "--source", str(SCRIPTS.parent), "--settings",
                           str(node.settings_file), "--only", "base", "--only", "secrets"], check=False, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        host.lab.stop(imds)
    assert f"ROBOT_TOKEN={SECRET['ROBOT_TOKEN']}" in node.path("/opt/robot/config/.env").read_text().splitlines()
