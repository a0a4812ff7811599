"""The lab itself: hosts reach each other over the bridge, and the emulator records calls."""

import os
import socket

from aws_emulator import AwsEmulator
from netns import Lab, require_root


def test_hosts_reach_each_other_and_emulator_records_calls():
    require_root()
    with Lab() as lab:
        a = lab.add_host("a", "10.77.0.11")
        b = lab.add_host("b", "10.77.0.12")
        aws = AwsEmulator(lab.add_host("aws", "10.77.0.254"))
        aws.start()
        assert a.run(["ping", "-c1", "-W2", b.address]).returncode == 0
        sm = aws.client("secretsmanager")
        sm.create_secret(Name="probe", SecretString="{}")
        assert [c[:2] for c in aws.calls()] == [("secretsmanager", "CreateSecret")]
        # namespaces are isolated: the root namespace has no route to the lab
        assert "10.77.0.11" not in socket.gethostbyname_ex(socket.gethostname())[2]
    assert lab._netns == []
    assert not os.path.exists(os.path.dirname(aws._recording))  # the call record went with the lab
