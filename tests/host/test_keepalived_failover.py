"""The failover program's decisions, one claim at a time: idempotence, backing off, retries.

The node is real (a namespace where a real keepalived holds the VIP, a fake IMDS on its
loopback); EC2 is a small recording stand-in, so each test states exactly which calls a claim
may make, including states moto cannot show (the EIP associated with the VIP itself).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys

import botocore.exceptions
import pytest

from netns import Lab, require_root, wait_for

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAKE_IMDS = os.path.join(REPO, "tests", "host", "fake_imds.py")
VIP, ENI, OTHER_ENI, ALLOCATION = "10.77.0.100", "eni-0aaaaaaaaaaaaaaaa", "eni-0bbbbbbbbbbbbbbbb", "eipalloc-0123456789abcdef0"
KEEPALIVED_CONF = f"""
global_defs {{
    vrrp_version 3
}}
vrrp_instance probe {{
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority 100
    advert_int 0.1
    unicast_src_ip 10.77.0.11
    unicast_peer {{
        10.77.0.12
    }}
    virtual_ipaddress {{
        {VIP}/32 dev eth0
    }}
}}
"""


def load_program():
    spec = importlib.util.spec_from_file_location("vip_failover", os.path.join(REPO, "scripts", "keepalived", "vip_failover.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeEC2:
    """Records calls and keeps the little state they change, like EC2 does (moving, not copying)."""

    def __init__(self, vip_on: str, eip_on: tuple[str, str]):
        self.vip_on, self.eip_on = vip_on, eip_on
        self.calls: list[tuple[str, dict]] = []
        self.failures: list[Exception] = []  # raised by the next assign/associate calls, in order
        self.on_describe = lambda: None

    def describe_network_interfaces(self, **kw):
        self.calls.append(("DescribeNetworkInterfaces", kw))
        self.on_describe()
        ips = [{"PrivateIpAddress": "10.77.0.11", "Primary": True}]
        if self.vip_on == kw["NetworkInterfaceIds"][0]:
            ips.append({"PrivateIpAddress": VIP, "Primary": False})
        return {"NetworkInterfaces": [{"NetworkInterfaceId": kw["NetworkInterfaceIds"][0], "PrivateIpAddresses": ips}]}

    def describe_addresses(self, **kw):
        self.calls.append(("DescribeAddresses", kw))
        eni, ip = self.eip_on
        return {"Addresses": [{"AllocationId": ALLOCATION, "NetworkInterfaceId": eni, "PrivateIpAddress": ip}]}

    def assign_private_ip_addresses(self, **kw):
        self.calls.append(("AssignPrivateIpAddresses", kw))
        self._maybe_fail()
        self.vip_on = kw["NetworkInterfaceId"]

    def associate_address(self, **kw):
        self.calls.append(("AssociateAddress", kw))
        self._maybe_fail()
        self.eip_on = (kw["NetworkInterfaceId"], kw["PrivateIpAddress"])

    def _maybe_fail(self):
        if self.failures:
            raise self.failures.pop(0)

    def moves(self):
        return [c for c in self.calls if not c[0].startswith("Describe")]


def client_error(code: str) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError({"Error": {"Code": code, "Message": code}}, "Op")


@pytest.fixture
def node(tmp_path, monkeypatch):
    """A namespace where keepalived is master (holds the VIP), and a Failover bound to it."""
    require_root()
    monkeypatch.delenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", raising=False)  # the program sets it
    with Lab() as lab:
        host = lab.add_host("n", "10.77.0.11")
        host.popen([sys.executable, FAKE_IMDS, "--port", "8169", "--region", "us-east-1", "--instance-id", "i-n",
                    "--mac", "0e:00:00:00:00:01", "--eni", ENI, "--local-ipv4", "10.77.0.11"])
        conf = tmp_path / "keepalived.conf"
        conf.write_text(KEEPALIVED_CONF)
        keepalived = host.popen(["keepalived", "-n", "-l", "-D", "-f", str(conf), "-p", str(tmp_path / "k.pid"),
                                 "-r", str(tmp_path / "v.pid"), "-c", str(tmp_path / "c.pid")])
        wait_for(lambda: VIP in host.addresses(), timeout=10, what="keepalived master with the VIP")
        program = load_program()
        config = {"ROBOT_VIP": VIP, "ROBOT_VIP_INTERFACE": "eth0", "ROBOT_EIP_ALLOCATION_ID": ALLOCATION,
                  "ROBOT_IMDS_ENDPOINT": "http://127.0.0.1:8169", "AWS_ENDPOINT_URL": "",
                  "ROBOT_VIP_RUN_DIR": str(tmp_path / "run"), "ROBOT_VIP_LOG": str(tmp_path / "log" / "vip.log")}
        wait_for(lambda: host.call(program.imds_identity, config["ROBOT_IMDS_ENDPOINT"]), timeout=10, what="fake IMDS")
        failover = host.call(program.Failover, config, program.Log(config["ROBOT_VIP_LOG"]))
        assert failover.eni == ENI  # from IMDS: mac -> interface-id
        yield lab, host, keepalived, failover, (tmp_path / "log" / "vip.log")


def test_claim_moves_vip_then_eip_and_a_second_run_changes_nothing(node):
    _, host, _, failover, _ = node
    failover.ec2 = ec2 = FakeEC2(vip_on=OTHER_ENI, eip_on=(OTHER_ENI, VIP))
    assert host.call(failover.claim, "MASTER") == "moved"
    assert ec2.moves() == [
        ("AssignPrivateIpAddresses", {"NetworkInterfaceId": ENI, "PrivateIpAddresses": [VIP], "AllowReassignment": True}),
        ("AssociateAddress", {"AllocationId": ALLOCATION, "NetworkInterfaceId": ENI, "PrivateIpAddress": VIP,
                              "AllowReassociation": True}),
    ]
    ec2.calls.clear()
    assert host.call(failover.claim, "reconcile") == "unchanged"
    assert sorted(name for name, _ in ec2.calls) == ["DescribeAddresses", "DescribeNetworkInterfaces"]


def test_claim_only_reassociates_an_eip_left_on_the_primary_address(node):
    _, host, _, failover, _ = node
    failover.ec2 = ec2 = FakeEC2(vip_on=ENI, eip_on=(ENI, "10.77.0.11"))
    assert host.call(failover.claim, "MASTER") == "moved"
    assert [name for name, _ in ec2.moves()] == ["AssociateAddress"]


def test_not_master_backs_off_without_any_call(node):
    lab, host, keepalived, failover, log = node
    failover.ec2 = ec2 = FakeEC2(vip_on=OTHER_ENI, eip_on=(OTHER_ENI, VIP))
    lab.stop(keepalived, signal.SIGTERM)  # keepalived stops cleanly: it removes the VIP
    assert VIP not in host.addresses()
    assert host.call(failover.claim, "MASTER") == "backed-off"
    assert ec2.calls == []
    assert "backing off" in log.read_text()


def test_vip_left_by_a_killed_keepalived_is_not_mastership(node):
    lab, host, keepalived, failover, _ = node
    failover.ec2 = ec2 = FakeEC2(vip_on=OTHER_ENI, eip_on=(OTHER_ENI, VIP))
    lab.stop(keepalived, signal.SIGKILL)  # a crash leaves the VIP on eth0
    wait_for(lambda: not host.call(failover.keepalived_running), timeout=20, what="keepalived processes gone")
    assert VIP in host.addresses()
    assert host.call(failover.claim, "reconcile") == "backed-off"
    assert ec2.calls == []


def test_losing_mastership_after_describe_stops_before_assigning(node):
    _, host, _, failover, _ = node
    failover.ec2 = ec2 = FakeEC2(vip_on=OTHER_ENI, eip_on=(OTHER_ENI, VIP))
    # the peer wins meanwhile: keepalived (as on a BACKUP transition) takes the VIP off eth0
    ec2.on_describe = lambda: host.run(["ip", "addr", "del", f"{VIP}/32", "dev", "eth0"], check=False)
    assert host.call(failover.claim, "MASTER") == "backed-off"
    assert ec2.moves() == []


def test_throttling_is_retried_with_backoff_and_bounded(node):
    _, host, _, failover, log = node
    failover.ec2 = ec2 = FakeEC2(vip_on=OTHER_ENI, eip_on=(OTHER_ENI, VIP))
    ec2.failures = [client_error("RequestLimitExceeded"), client_error("RequestLimitExceeded")]
    assert host.call(failover.claim, "MASTER") == "moved"
    assert [name for name, _ in ec2.moves()] == ["AssignPrivateIpAddresses"] * 3 + ["AssociateAddress"]
    assert log.read_text().count("RequestLimitExceeded, attempt") == 2

    ec2.calls.clear()
    ec2.vip_on = OTHER_ENI
    ec2.failures = [client_error("RequestLimitExceeded")] * 10
    with pytest.raises(botocore.exceptions.ClientError):
        host.call(failover.claim, "MASTER")
    assert len(ec2.moves()) == 4  # ATTEMPTS, then it gives up (the watcher retries later)


def test_permission_errors_are_not_retried(node):
    _, host, _, failover, log = node
    failover.ec2 = ec2 = FakeEC2(vip_on=OTHER_ENI, eip_on=(OTHER_ENI, VIP))
    ec2.failures = [client_error("UnauthorizedOperation")]
    with pytest.raises(botocore.exceptions.ClientError):
        host.call(failover.claim, "MASTER")
    assert len(ec2.moves()) == 1
    assert "UnauthorizedOperation), attempt 1/4: giving up" in log.read_text()
