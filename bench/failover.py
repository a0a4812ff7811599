"""Failover timing of the keepalived VIP pair, in network namespaces with moto as EC2.

    sudo ./venv/bin/python -m bench.failover [--runs 10] [--only kill9,graceful,health]

For each way the master goes, over --runs runs, the time from the event to
  (a) the VIP up in the new master's OS (the kernel's address event, from `ip -ts monitor`)
  (b) the new master's failover program done with EC2 (its "failover done" log line)
and prints median / min / max. Events: kill9 = SIGKILL to every keepalived process of the master
(a crash: no goodbye advert, the backup waits out 3 adverts + skew); graceful = SIGTERM (keepalived
sends priority 0, the backup takes over at once); health = the master's robot health endpoint
dies (2 failed checks a second apart -> FAULT). After each run the old master is restored and
stays backup (nopreempt), so runs alternate between the two nodes.

moto answers in a few ms; real EC2 calls take tens of ms each (2 describes in parallel, then
assign and associate), so add ~0.1-0.2 s to (b) on AWS. moto also never takes the VIP off the old
ENI, so moves back to a node that once held it skip the assign call here.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import time

from bench.failover_pair import AddressMonitor, Lab, Node, Pair, wait_for

SCENARIOS = ("kill9", "graceful", "health")


def run_once(pair: Pair, monitor: AddressMonitor, scenario: str) -> tuple[float, float]:
    master = pair.wait_settled()
    backup = pair.peer(master)
    event = time.time()
    if scenario == "kill9":
        pair.signal_keepalived(master, signal.SIGKILL)
    elif scenario == "graceful":
        pair.signal_keepalived(master, signal.SIGTERM)
    else:
        pair.stop_health(master)
    vip_up = wait_for(lambda: monitor.added_after(backup.name, event), timeout=20, interval=0.01, what="VIP on the backup")
    aws_done = wait_for(lambda: backup.done_after(event), timeout=20, interval=0.01, what="AWS calls done")
    restore(pair, master, scenario)
    return vip_up - event, aws_done - event


def restore(pair: Pair, old_master: Node, scenario: str) -> None:
    if scenario == "health":
        pair.start_health(old_master)
    else:
        pair.reap_keepalived(old_master)
        pair.start_keepalived(old_master)
    pair.wait_settled()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--only", default=",".join(SCENARIOS))
    args = parser.parse_args()
    scenarios = [s for s in args.only.split(",") if s]
    results: dict[str, list[tuple[float, float]]] = {}
    with Lab() as lab:
        pair = Pair(lab)
        try:
            pair.start()
            monitor = AddressMonitor(pair)
            for scenario in scenarios:
                results[scenario] = [run_once(pair, monitor, scenario) for _ in range(args.runs)]
                print(f"{scenario}: {args.runs} runs done", flush=True)
        finally:
            pair.close()
    print(f"\nfailover timing over {args.runs} runs each (seconds from the event)")
    print(f"{'event':<10} {'(a) VIP up in OS':>28} {'(b) AWS calls done':>28}")
    print(f"{'':<10} {'median   min    max':>28} {'median   min    max':>28}")
    for scenario, runs in results.items():
        cols = []
        for values in zip(*runs):
            cols.append(f"{statistics.median(values):6.3f} {min(values):6.3f} {max(values):6.3f}")
        print(f"{scenario:<10} {cols[0]:>28} {cols[1]:>28}")


if __name__ == "__main__":
    main()
