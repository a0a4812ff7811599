"""Throw-away test hosts: network namespaces joined by a bridge, for host tests.

A `Lab` makes a hub namespace holding a bridge, and one namespace per host wired to it
by a veth pair (the host's end is `eth0`). Traffic stays inside namespaces this test
created: the addresses handed out are only ever configured inside them.

    with Lab() as lab:
        node = lab.add_host("node", "10.77.0.11")
        client = lab.add_host("client", "10.77.0.21")
        proc = node.popen(["nginx", "-c", conf])
        client.call(urllib.request.urlopen, "http://10.77.0.11/health")

`Host.call` runs a Python callable in a thread that has joined the host's network
namespace (setns is per thread), so tests can use urllib/boto3 directly from inside.
Every process started with `popen` is ended by PID (its process group) on exit, and
every namespace is deleted, also when the test fails.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import signal
import subprocess
import threading
import time
from typing import Any, Callable

CLONE_NEWNET = 0x40000000
PREFIX_LEN = 24
_libc = ctypes.CDLL(None, use_errno=True)
_lab_ids = itertools.count()


def require_root() -> None:
    """Host tests need root; in CI a host test that cannot run must fail, not skip."""
    import pytest

    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("host tests need root (CI runs as root)")
        pytest.skip("host tests need root")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Host:
    """One namespace with eth0 on the lab's bridge."""

    def __init__(self, lab: "Lab", name: str, netns: str, address: str):
        self.lab = lab
        self.name = name
        self.netns = netns
        self.address = address

    def cmd(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv]

    def run(self, argv: list[str], check: bool = True, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(self.cmd(argv), check=check, timeout=timeout, **kw)

    def popen(self, argv: list[str], **kw: Any) -> subprocess.Popen:
        """Start a long-running process in this namespace; the lab ends it on exit."""
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(self.cmd(argv), start_new_session=True, **kw)
        self.lab._procs.append(proc)
        return proc

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run fn(*args, **kwargs) with this namespace's network; return or raise its result."""
        result: dict[str, Any] = {}

        def target() -> None:
            try:
                fd = os.open(f"/run/netns/{self.netns}", os.O_RDONLY)
                try:
                    if _libc.setns(fd, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns failed")
                finally:
                    os.close(fd)
                result["value"] = fn(*args, **kwargs)
            except BaseException as exc:  # re-raised in the caller's thread
                result["error"] = exc

        thread = threading.Thread(target=target, name=f"netns-{self.name}")
        thread.start()
        thread.join()
        if "error" in result:
            raise result["error"]
        return result.get("value")

    def addresses(self, dev: str = "eth0") -> set[str]:
        """IPv4 addresses currently on dev, without prefix length."""
        out = self.run(["ip", "-o", "-4", "addr", "show", "dev", dev]).stdout
        return {line.split()[3].split("/")[0] for line in out.splitlines()}


class Lab:
    """A set of hosts on one bridge; a context manager that cleans up after itself."""

    def __init__(self, prefix: str = "rbt"):
        self.id = f"{prefix}{os.getpid() % 10000}x{next(_lab_ids)}"
        self.hub = f"{self.id}hub"
        self.hosts: dict[str, Host] = {}
        self._procs: list[subprocess.Popen] = []
        self._netns: list[str] = []
        self._cleanups: list[Callable[[], None]] = []

    def __enter__(self) -> "Lab":
        self._add_netns(self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _add_netns(self, name: str) -> None:
        _ip("netns", "add", name)
        self._netns.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def add_host(self, name: str, address: str) -> Host:
        netns = f"{self.id}{name}"
        self._add_netns(netns)
        index = len(self.hosts)
        hub_end, host_end = f"{self.id}h{index}"[-15:], f"{self.id}n{index}"[-15:]
        _ip("link", "add", hub_end, "type", "veth", "peer", "name", host_end)
        _ip("link", "set", hub_end, "netns", self.hub)
        _ip("link", "set", host_end, "netns", netns)
        _ip("-n", self.hub, "link", "set", hub_end, "master", "br0", "up")
        _ip("-n", netns, "link", "set", host_end, "name", "eth0")
        _ip("-n", netns, "addr", "add", f"{address}/{PREFIX_LEN}", "dev", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        host = Host(self, name, netns, address)
        self.hosts[name] = host
        return host

    def add_cleanup(self, fn: Callable[[], None]) -> None:
        """Run fn when the lab closes, after its processes have ended (e.g. remove temp files)."""
        self._cleanups.append(fn)

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        """End one process we started (its whole process group), by PID."""
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def close(self) -> None:
        for proc in reversed(self._procs):
            self.stop(proc)
        self._procs.clear()
        for fn in reversed(self._cleanups):
            fn()
        self._cleanups.clear()
        for name in reversed(self._netns):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self._netns.clear()


def wait_for(predicate: Callable[[], Any], timeout: float = 20, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll predicate until it returns truthy (exceptions count as not yet); bounded in time."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # not ready yet
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}" + (f": {last!r}" if last else ""))
