"""The pair topology: addresses, VRRP, failover IAM, and no tug of war with keepalived."""

import json

import pytest

import harness
from components import addressing, policies, vip_pair

INSTANCE = "aws:ec2/instance:Instance"
EIP = "aws:ec2/eip:Eip"
PAIR = {"topology": "pair"}


def _run(config=None):
    run = harness.run({**PAIR, **(config or {})})
    assert run.error is None, run.error
    return run


def test_pair_addresses_come_from_the_top_of_the_subnet():
    a = addressing.pair_addresses("172.31.0.0/20")
    assert (a.vip, a.primary, a.backup) == ("172.31.15.254", "172.31.15.253", "172.31.15.252")
    with pytest.raises(ValueError):
        addressing.pair_addresses("172.31.0.0/29")


def test_router_id_is_stable_and_in_range():
    ids = {addressing.vrrp_router_id(f"stack{i}") for i in range(200)}
    assert min(ids) >= 1 and max(ids) <= 255 and len(ids) > 100
    assert addressing.vrrp_router_id("dev") == addressing.vrrp_router_id("dev")


def test_two_nodes_in_one_subnet_with_the_vip_on_the_primary():
    run = _run()
    nodes = {r.name: r for r in run.of_type(INSTANCE)}
    assert set(nodes) == {"pair-primary-instance", "pair-backup-instance"}
    primary, backup = nodes["pair-primary-instance"], nodes["pair-backup-instance"]
    assert primary.props["subnetId"] == backup.props["subnetId"] == "subnet-0aaa0aaa0aaa0aaa0"
    assert (primary.props["privateIp"], backup.props["privateIp"]) == ("172.31.15.253", "172.31.15.252")
    assert primary.props["secondaryPrivateIps"] == ["172.31.15.254"]
    assert not backup.props.get("secondaryPrivateIps")
    vip_eip = run.resource(EIP, "pair-vip-eip")
    assert vip_eip.props["networkInterface"] == primary.state["primaryNetworkInterfaceId"]
    assert vip_eip.props["associateWithPrivateIp"] == "172.31.15.254"
    assert run.outputs["publicIp"].value == vip_eip.state["publicIp"]
    assert run.outputs["endpointUrl"].value == f"http://{vip_eip.state['publicIp']}/api/v1/chat"
    assert run.outputs["vip"].value == "172.31.15.254"
    # each node keeps its own Elastic IP for SSH and as a stable egress address
    node_eips = [run.resource(EIP, f"pair-{r}-eip").state["publicIp"] for r in ("primary", "backup")]
    assert run.outputs["egressIps"].value == node_eips


def _diff(desired: dict, actual: dict, ignored: list) -> set:
    """The properties a plan would change: desired inputs that differ from the refreshed state."""
    return {k for k, v in desired.items() if k not in ignored and actual.get(k, v) != v}


def test_no_tug_of_war_after_a_failover():
    run = _run()
    nodes = {r.name: r for r in run.of_type(INSTANCE)}
    primary, backup = nodes["pair-primary-instance"], nodes["pair-backup-instance"]
    vip_eip = run.resource(EIP, "pair-vip-eip")
    backup_eni = backup.state["primaryNetworkInterfaceId"]
    # What `pulumi refresh` reads back after keepalived moved the VIP and its EIP to the backup.
    refreshed = {
        primary.name: {**primary.props, "secondaryPrivateIps": []},
        backup.name: {**backup.props, "secondaryPrivateIps": ["172.31.15.254"]},
        vip_eip.name: {**vip_eip.props, "networkInterface": backup_eni, "instance": backup.id},
    }
    for r in (primary, backup, vip_eip):
        assert _diff(r.props, refreshed[r.name], r.ignore_changes) == set(), r.name
    # And the check itself bites: without the ignores, both would be moved back.
    assert _diff(primary.props, refreshed[primary.name], []) == {"secondaryPrivateIps"}
    assert _diff(vip_eip.props, refreshed[vip_eip.name], []) == {"networkInterface"}
    assert set(vip_pair.VIP_EIP_MOVABLE) <= set(vip_eip.ignore_changes)
    # A separate association resource would be deleted by refresh and re-created on the primary.
    assert run.of_type("aws:ec2/eipAssociation:EipAssociation") == []


def test_vrrp_only_between_the_members():
    single = harness.run()
    pair = _run()
    ingress = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
    vrrp = [r for r in pair.of_type(ingress) if r.props["ipProtocol"] == "112"]
    assert len(vrrp) == 1
    sg = pair.resource("aws:ec2/securityGroup:SecurityGroup")
    assert vrrp[0].props["referencedSecurityGroupId"] == sg.id and "cidrIpv4" not in vrrp[0].props
    assert len(pair.of_type(ingress)) == len(single.of_type(ingress)) + 1  # nothing else added
    assert not [r for r in single.of_type(ingress) if r.props["ipProtocol"] == "112"]


def test_failover_policy_is_scoped_to_the_pair():
    run = _run()
    enis = sorted(r.state["primaryNetworkInterfaceId"] for r in run.of_type(INSTANCE))
    allocation = run.resource(EIP, "pair-vip-eip").state["allocationId"]
    doc = json.loads(run.resource("aws:iam/policy:Policy", "pair-failover").props["policy"])
    eni_arns = sorted(f"arn:aws:ec2:{harness.REGION}:{harness.ACCOUNT}:network-interface/{e}" for e in enis)
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    assert by_sid["MoveVipBetweenPairInterfaces"]["Action"] == "ec2:AssignPrivateIpAddresses"
    assert by_sid["MovePairElasticIp"]["Action"] == "ec2:AssociateAddress"
    assert sorted(by_sid["MoveVipBetweenPairInterfaces"]["Resource"]) == eni_arns
    assert sorted(by_sid["MovePairElasticIp"]["Resource"]) == sorted([f"arn:aws:ec2:{harness.REGION}:{harness.ACCOUNT}:elastic-ip/{allocation}", *eni_arns])
    assert by_sid["ReadPlacement"]["Resource"] == "*"
    assert all(a.startswith("ec2:Describe") for a in by_sid["ReadPlacement"]["Action"])
    attached = {a.name: a.props for a in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")}
    failover_arn = run.resource("aws:iam/policy:Policy", "pair-failover").state["arn"]
    assert {n for n, p in attached.items() if p["policyArn"] == failover_arn} == {"pair-failover-primary", "pair-failover-backup"}


def test_failover_policy_arns_follow_the_partition():
    doc = json.loads(policies.vip_failover("aws-cn", "cn-north-1", "123456789012", ["eni-1"], "eipalloc-1"))
    resources = json.dumps(doc)
    assert "arn:aws-cn:ec2:cn-north-1:123456789012:network-interface/eni-1" in resources
    assert "arn:aws:" not in resources


def test_each_node_is_bootstrapped_with_its_own_view_of_the_pair():
    run = _run({"vrrpAdvertInterval": "0.2"})
    nodes = {r.name: r for r in run.of_type(INSTANCE)}
    allocation = run.resource(EIP, "pair-vip-eip").state["allocationId"]
    seen = {}
    for role, peer in (("primary", "backup"), ("backup", "primary")):
        final = run.resource("command:remote:Command", f"pair-{role}-bootstrap-run")
        values = harness.settings_env(run, f"pair-{role}-bootstrap")
        assert values["ROBOT_TOPOLOGY"] == "pair" and values["ROBOT_PAIR_ROLE"] == role
        assert values["ROBOT_SELF_IP"] == nodes[f"pair-{role}-instance"].props["privateIp"]
        assert values["ROBOT_PEER_IP"] == nodes[f"pair-{peer}-instance"].props["privateIp"]
        assert values["ROBOT_ENI_ID"] == nodes[f"pair-{role}-instance"].state["primaryNetworkInterfaceId"]
        assert values["ROBOT_PEER_ENI_ID"] == nodes[f"pair-{peer}-instance"].state["primaryNetworkInterfaceId"]
        assert values["ROBOT_VIP"] == "172.31.15.254" and values["ROBOT_EIP_ALLOCATION_ID"] == allocation
        assert values["ROBOT_VRRP_ADVERT_INTERVAL"] == "0.2"
        seen[role] = values["ROBOT_VRRP_ROUTER_ID"]
        # connects to the node's own Elastic IP, after the failover permission exists
        eip = run.resource(EIP, f"pair-{role}-eip").state["publicIp"]
        assert harness.plain(final.inputs["connection"])["host"] == eip
        bootstrap = run.resource("robot:aws:Bootstrap", f"pair-{role}-bootstrap")
        attachment = run.resource("aws:iam/rolePolicyAttachment:RolePolicyAttachment", f"pair-failover-{role}")
        assert attachment.urn in bootstrap.dependencies
    assert seen["primary"] == seen["backup"]
