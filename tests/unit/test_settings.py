"""Settings: defaults, and bad configurations stopped before any resource exists."""

import pulumi
import pytest

import harness
from components import settings

SECRET_KEYS = frozenset({"robot:apiKey", "robot:apiSecret"})
REGION = "us-east-1"
MINIMAL = {"allowedCidrs": '["203.0.113.0/24"]', "apiKey": "k", "apiSecret": "s"}


def test_defaults_from_the_minimal_config():
    s = settings.parse(MINIMAL, SECRET_KEYS, REGION)
    assert s.topology == "single"
    assert s.allowed_cidrs == ("203.0.113.0/24",)
    assert s.ssh_cidrs == ("203.0.113.0/24",)  # sshCidrs defaults to allowedCidrs
    assert (s.instance_type, s.os, s.root_volume_gib, s.robot_port) == ("t3.medium", "ubuntu-24.04", 30, 18789)
    assert (s.ddos_requests_per_second, s.ddos_connections_per_ip, s.ddos_window_seconds) == (1000, 500, 60)
    assert (s.token_rotation_days, s.secret_recovery_days, s.vrrp_advert_interval) == (30, 7, 0.1)
    assert s.ingress_ports == (80, 443, 18789) and s.expose_robot_port


def test_robot_port_can_stay_behind_nginx():
    s = settings.parse(dict(MINIMAL, exposeRobotPort="false", basicAuth="true"), SECRET_KEYS, REGION)
    assert s.ingress_ports == (80, 443) and s.basic_auth


def test_pulumi_yaml_defaults_mean_unset():
    """The CLI injects Pulumi.yaml's defaults ("" and []) into config: they must parse as unset."""
    raw = dict(MINIMAL, sshCidrs="[]", subnetIds="[]", ami="", robotImage="", vpcId="", certificateArn="", vrrpAdvertInterval="0.1", instanceCount="2")
    s = settings.parse(raw, SECRET_KEYS, REGION)
    assert s.ssh_cidrs == s.allowed_cidrs and s.ami is None and s.vpc_id is None and s.subnet_ids == ()


def test_public_ssh_needs_the_explicit_opt_in():
    raw = dict(MINIMAL, sshCidrs='["0.0.0.0/0"]', allowPublicSsh="true")
    assert settings.parse(raw, SECRET_KEYS, REGION).ssh_cidrs == ("0.0.0.0/0",)


def test_all_problems_are_reported_in_one_error():
    raw = dict(MINIMAL, robotPort="22", os="windows", healthPath="health")
    with pytest.raises(settings.ConfigError) as err:
        settings.parse(raw, SECRET_KEYS, REGION)
    assert len(err.value.problems) == 3
    for key in ("robot:robotPort", "robot:os", "robot:healthPath"):
        assert key in str(err.value)
    # A RunError is printed by the Pulumi CLI without a Python traceback.
    assert isinstance(err.value, pulumi.RunError)


BAD = [
    # (config overrides, secrets overrides, key the error must name, what it must say)
    ({"allowedCidrs": None}, {}, "robot:allowedCidrs", "required"),
    ({"allowedCidrs": "203.0.113.0/24"}, {}, "robot:allowedCidrs", "not a list"),
    ({"allowedCidrs": '["10.0.0.300/24"]'}, {}, "robot:allowedCidrs", "not a valid CIDR"),
    ({"allowedCidrs": '["203.0.113.5/24"]'}, {}, "robot:allowedCidrs", "host bits"),
    ({"sshCidrs": '["0.0.0.0/0"]'}, {}, "robot:sshCidrs", "allowPublicSsh"),
    ({"allowedCidrs": '["::/0"]'}, {}, "robot:sshCidrs", "whole internet"),
    ({"robotPort": "22"}, {}, "robot:robotPort", "clashes"),
    ({"robotPort": "70000"}, {}, "robot:robotPort", "1-65535"),
    ({"robotPort": "abc"}, {}, "robot:robotPort", "not an integer"),
    ({"topology": "cluster"}, {}, "robot:topology", "single, pair, balanced"),
    ({"instanceType": "t3medium"}, {}, "robot:instanceType", "t3.medium"),
    ({"os": "windows"}, {}, "robot:os", "ubuntu-24.04"),
    ({"rootVolumeGiB": "8"}, {}, "robot:rootVolumeGiB", "20-16384"),
    ({"healthPath": "health"}, {}, "robot:healthPath", "starting with /"),
    ({}, {"apiKey": None}, "robot:apiKey", "required"),
    ({"apiKey": "plain-text-key"}, {"apiKey": None}, "robot:apiKey", "--secret"),
    ({"tokenRotationDays": "0"}, {}, "robot:tokenRotationDays", "1-365"),
    ({"secretRecoveryDays": "3"}, {}, "robot:secretRecoveryDays", "0 or 7-30"),
    ({"instanceCount": "5"}, {}, "robot:instanceCount", "only applies to topology balanced"),
    ({"vrrpAdvertInterval": "0.5"}, {}, "robot:vrrpAdvertInterval", "only applies to topology pair"),
    ({"certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/abc-123"}, {}, "robot:certificateArn", "balanced"),
    ({"gpu": "true"}, {}, "robot:instanceType", "g4dn.xlarge"),
    ({"ddosWindowSeconds": "45"}, {}, "robot:ddosWindowSeconds", "60, 120, 300, 600"),
    ({"alowedCidrs": '["203.0.113.0/24"]'}, {}, "robot:alowedCidrs", "did you mean robot:allowedCidrs"),
    ({"allowPublicSsh": "yes"}, {}, "robot:allowPublicSsh", "true, false"),
    ({"sshPublicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIabc me"}, {}, "robot:sshPrivateKey", "go together"),
    ({"subnetIds": '["subnet-0123456789abcdef0"]'}, {}, "robot:subnetIds", "robot:vpcId"),
    ({"upstreamUrl": "ftp://example.com/v1"}, {}, "robot:upstreamUrl", "http(s)://"),
    ({"ami": "ami-xyz"}, {}, "robot:ami", "ami-0123456789abcdef0"),
    ({"basicAuth": "true"}, {}, "robot:exposeRobotPort", "without nginx's basic auth"),
    ({"topology": "balanced", "subnetIds": '["subnet-0123456789abcdef0"]', "vpcId": "vpc-0123456789abcdef0"}, {}, "robot:subnetIds", "two availability zones"),
]


@pytest.mark.parametrize("config,secrets,key,says", BAD, ids=[f"{b[2]}:{b[3]}" for b in BAD])
def test_bad_config_names_the_key_and_registers_nothing(config, secrets, key, says):
    values = {k: v for k, v in {**harness.REQUIRED_CONFIG, **config}.items() if v is not None}
    secret_values = {k: v for k, v in {**harness.REQUIRED_SECRETS, **secrets}.items() if v is not None}
    run = harness.run(values, secret_values, base=False)
    assert isinstance(run.error, settings.ConfigError), run.error
    message = str(run.error)
    assert key in message and says in message, message
    assert run.registrations == [], [r.name for r in run.registrations]


def test_missing_region_is_reported_before_any_resource():
    run = harness.run(aws_region=None)
    assert isinstance(run.error, settings.ConfigError) and "aws:region" in str(run.error)
    assert run.registrations == []


def test_enough_distinct_bad_configurations():
    assert len({(key, says) for _, _, key, says in BAD}) >= 15
