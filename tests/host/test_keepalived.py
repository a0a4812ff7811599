"""The keepalived VIP pair for real: two namespaces running keepalived, the failover program, a
health endpoint and a fake IMDS each, with moto as EC2 (see bench/failover_pair.py).

moto accepts AllowReassignment without removing the VIP from the old ENI and ignores
PrivateIpAddress on AssociateAddress, so the tests assert on the calls the failover program made
(and from which node's ENI) as well as on the state moto can show.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from bench.failover_pair import PYTHON, VIP, AddressMonitor, Node, Pair  # noqa: E402
from netns import Lab, require_root, wait_for  # noqa: E402

INSTALL = os.path.join(REPO, "scripts", "keepalived", "install.sh")
CYCLES = 20


@pytest.fixture
def pair():
    require_root()
    with Lab() as lab:
        p = Pair(lab)
        try:
            yield p
        finally:
            p.close()


def moves(pair: Pair) -> list[tuple[str, dict]]:
    return [(action, params) for service, action, params in pair.aws.calls()
            if service == "ec2" and action in ("AssignPrivateIpAddresses", "AssociateAddress")]


def emulator_has_vip(pair: Pair, node: Node) -> bool:
    eni = pair.aws.client("ec2").describe_network_interfaces(NetworkInterfaceIds=[node.eni])["NetworkInterfaces"][0]
    return VIP in {ip["PrivateIpAddress"] for ip in eni["PrivateIpAddresses"]}


def assert_moved_to(pair: Pair, node: Node, assigned: bool) -> None:
    """node's failover program asked EC2 for the VIP (reassigning) and the EIP (reassociating); nobody else did.

    assigned: whether an assign is due; moto never takes the VIP off the old ENI, so an ENI that
    held it once looks right to the describe-first check and only the EIP is re-associated.
    """
    calls = moves(pair)
    assert calls, "no AssignPrivateIpAddresses / AssociateAddress call reached the emulator"
    assert {p["NetworkInterfaceId"] for _, p in calls} == {node.eni}, calls
    if assigned:
        assert ("AssignPrivateIpAddresses", {"Version": "2016-11-15", "NetworkInterfaceId": node.eni,
                                             "PrivateIpAddress.1": VIP, "AllowReassignment": "true"}) in calls
    assert ("AssociateAddress", {"Version": "2016-11-15", "AllocationId": pair.allocation, "NetworkInterfaceId": node.eni,
                                 "PrivateIpAddress": VIP, "AllowReassociation": "true"}) in calls
    address = pair.aws.client("ec2").describe_addresses(AllocationIds=[pair.allocation])["Addresses"][0]
    assert address["NetworkInterfaceId"] == node.eni
    assert emulator_has_vip(pair, node)


def started_and_settled(pair: Pair) -> tuple[Node, Node, bool, float]:
    """Start the pair, wait until it has settled, clear the call record: the moment before an event.

    Returns the master, the backup, whether the backup still needs an assign call (see
    assert_moved_to), and the event's start time.
    """
    pair.start()
    master = pair.wait_settled()
    backup = pair.peer(master)
    assign_due = not emulator_has_vip(pair, backup)
    pair.aws.reset_calls()
    return master, backup, assign_due, time.time()


def wait_takeover(pair: Pair, node: Node, since: float) -> None:
    wait_for(lambda: pair.owners() == {node.name} and node.done_after(since), timeout=20, interval=0.05,
             what=f"{node.name} owns the VIP alone and finished the AWS calls")


def test_rendered_configs_pass_keepalived_t_and_install_is_idempotent(pair):
    pair.allocation = "eipalloc-0123456789abcdef0"
    for node in pair.nodes.values():
        node.eni = f"eni-0{node.name * 16}"
        first = pair.install(node)
        assert "config: keepalived -t accepts" in first.stdout
        conf = open(node.conf).read()
        assert "vrrp_version 3" in conf and "advert_int 0.1" in conf and "nopreempt" in conf
        assert f"unicast_src_ip {node.host.address}" in conf and f"        {node.peer_ip}\n" in conf
        assert "unicast_fault_no_peer" in conf and f"{VIP}/32 dev eth0" in conf
        assert f"priority {150 if node.role == 'primary' else 100}" in conf
        # keepalived -t, inside the node's namespace where eth0 exists
        assert node.host.run(["keepalived", "-t", "-f", node.conf], check=False).returncode == 0
        mtimes = {p: os.stat(p).st_mtime_ns for p in _files(node.root)}
        again = pair.install(node)
        assert "files: all up to date" in again.stdout
        assert {p: os.stat(p).st_mtime_ns for p in _files(node.root)} == mtimes
    # keepalived -t is a real check: a config naming an interface the node lacks is rejected
    broken = os.path.join(pair.base, "broken.conf")
    with open(broken, "w") as fh:
        fh.write(open(pair.nodes["a"].conf).read().replace("dev eth0", "dev eth9").replace("interface eth0", "interface eth9"))
    assert pair.nodes["a"].host.run(["keepalived", "-t", "-f", broken], check=False).returncode != 0


def test_units_and_install_script_pass_their_tools(pair):
    pair.allocation = "eipalloc-0123456789abcdef0"
    node = pair.nodes["a"]
    node.eni = "eni-0aaaaaaaaaaaaaaaa"
    pair.install(node)
    units = os.path.join(node.root, "etc/systemd/system")
    verify = subprocess.run(["systemd-analyze", "verify", "--man=no",
                             os.path.join(units, "robot-vip-reconcile.service"), os.path.join(units, "robot-vip-reconcile.timer")],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    assert subprocess.run(["shellcheck", "-x", INSTALL], capture_output=True).returncode == 0


def test_kill9_of_the_master_moves_vip_to_the_backup_in_os_and_aws(pair):
    master, backup, assign_due, since = started_and_settled(pair)
    pair.signal_keepalived(master, signal.SIGKILL)
    wait_for(lambda: backup.has_vip() and backup.done_after(since), timeout=20, interval=0.05, what="backup took over")
    assert_moved_to(pair, backup, assign_due)
    # the crashed master still has the VIP on eth0 (nobody removed it) but AWS routes it to the backup;
    # its keepalived comes back as BACKUP (nopreempt), removes the stale VIP and moves nothing.
    pair.reap_keepalived(master)
    pair.aws.reset_calls()
    pair.start_keepalived(master)
    assert pair.wait_settled() is backup
    assert pair.owners() == {backup.name}
    assert master.eni not in {p["NetworkInterfaceId"] for _, p in moves(pair)}


def test_robot_health_failure_demotes_the_master_and_restore_leaves_one_owner(pair):
    master, backup, assign_due, since = started_and_settled(pair)
    pair.stop_health(master)
    wait_takeover(pair, backup, since)
    wait_for(lambda: master.state() == "FAULT", timeout=10, what="old master in FAULT")
    assert_moved_to(pair, backup, assign_due)
    pair.start_health(master)
    assert pair.wait_settled() is backup  # nopreempt: the restored node stays backup
    assert pair.owners() == {backup.name}


def test_graceful_stop_hands_over_and_the_loser_backs_off(pair):
    pair.start()
    master = pair.wait_settled()
    backup = pair.peer(master)
    since = time.time()
    pair.signal_keepalived(master, signal.SIGTERM)
    wait_takeover(pair, backup, since)
    # keepalived ended its failover program with it; a reconcile on the stopped node must not act
    pair.reap_keepalived(master)
    pair.aws.reset_calls()
    result = master.host.run([PYTHON, _installed(master), "--config", _config(master), "reconcile"], check=False)
    assert result.returncode == 0, result.stderr
    assert "not master" in result.stderr and "backing off" in result.stderr
    # not even a describe from it (the new master's own checks may run meanwhile)
    assert [c for c in pair.aws.calls() if master.eni in c[2].values()] == []


def test_twenty_cycles_never_two_owners(pair):
    pair.start()
    monitor = AddressMonitor(pair)
    for cycle in range(CYCLES):
        master = pair.wait_settled()
        backup = pair.peer(master)
        since = time.time()
        # alternate the two clean ways a master goes: its robot fails, or keepalived is stopped
        if cycle % 2 == 0:
            pair.stop_health(master)
            wait_takeover(pair, backup, since)
            pair.start_health(master)
        else:
            pair.signal_keepalived(master, signal.SIGTERM)
            wait_takeover(pair, backup, since)
            pair.reap_keepalived(master)
            pair.start_keepalived(master)
        assert pair.wait_settled() is backup, f"cycle {cycle}: the VIP should stay on the new master"
        assert monitor.added_after(backup.name, since), f"cycle {cycle}: kernel saw no VIP added on {backup.name}"
    assert monitor.overlaps() == []
    takeovers = [e for e in monitor.events if e[2]]
    assert len(takeovers) >= CYCLES


def _files(root: str) -> list[str]:
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if "/etc/" in d or "/opt/" in d)


def _installed(node: Node) -> str:
    return os.path.join(node.root, "opt/robot/bin/robot-vip-failover")


def _config(node: Node) -> str:
    return os.path.join(node.root, "etc/keepalived/robot-vip.env")
