"""A local AWS for host tests: moto's server inside a lab namespace, with request recording.

    aws = AwsEmulator(lab.add_host("aws", "10.77.0.254"))
    aws.start()
    aws.client("secretsmanager").create_secret(...)      # seed state (from inside the ns)
    ... hosts call aws.endpoint with dummy credentials ...
    aws.calls()  -> [("secretsmanager", "GetSecretValue", params), ("ec2", "AssignPrivateIpAddresses", {...})]

moto accepts AllowReassignment without removing the IP from the old interface and ignores
PrivateIpAddress on associate-address, so tests assert on the calls made as well as on state.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import tempfile
import urllib.parse
import urllib.request
from typing import Any

from netns import Host, wait_for

PORT = 5000
REGION = "us-east-1"
# Dummy credentials: moto accepts anything; nothing here is a real key.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}


class AwsEmulator:
    def __init__(self, host: Host):
        self.host = host
        self.endpoint = f"http://{host.address}:{PORT}"
        recordings = tempfile.mkdtemp(prefix="moto-rec-")
        host.lab.add_cleanup(lambda: shutil.rmtree(recordings, ignore_errors=True))
        self._recording = os.path.join(recordings, "recording.jsonl")

    def start(self) -> None:
        moto_server = os.path.join(os.path.dirname(sys.executable), "moto_server")
        env = dict(os.environ, MOTO_ENABLE_RECORDING="true", MOTO_RECORDER_FILEPATH=self._recording, **CREDENTIALS)
        self.host.popen([moto_server, "-H", "0.0.0.0", "-p", str(PORT)], env=env)
        wait_for(lambda: self.host.call(self._get, "/moto-api/data.json"), timeout=30, what="moto server")
        self.reset_calls()

    def _get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}{path}", timeout=5) as resp:
            return resp.read()

    def _post(self, path: str) -> None:
        req = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", data=b"", method="POST")
        urllib.request.urlopen(req, timeout=5).close()

    def client(self, service: str) -> Any:
        """A boto3 client whose calls run inside the emulator's namespace."""
        import boto3

        real = boto3.client(
            service,
            endpoint_url=f"http://127.0.0.1:{PORT}",
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        host = self.host

        class InNamespace:
            def __getattr__(self, name: str) -> Any:
                attr = getattr(real, name)
                if not callable(attr):
                    return attr
                return lambda *a, **kw: host.call(attr, *a, **kw)

        return InNamespace()

    def reset_calls(self) -> None:
        self.host.call(self._post, "/moto-api/recorder/reset-recording")

    def calls(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(service, action, params) for every recorded AWS request, in order."""
        if not os.path.exists(self._recording):
            return []
        result = []
        with open(self._recording) as fh:
            for line in fh:
                entry = json.loads(line)
                result.append(_parse(entry))
        return [call for call in result if call is not None]


def _parse(entry: dict[str, Any]) -> tuple[str, str, dict[str, Any]] | None:
    headers = {k.lower(): v for k, v in entry["headers"].items()}
    body = entry.get("body") or ""
    if entry.get("body_encoded"):
        body = base64.b64decode(body).decode("utf-8", "replace")
    target = headers.get("x-amz-target")
    if target:  # JSON protocol, e.g. secretsmanager.GetSecretValue
        service, _, action = target.partition(".")
        return service.lower(), action, json.loads(body or "{}")
    auth = headers.get("authorization", "")
    service = auth.split("Credential=")[1].split("/")[3] if "Credential=" in auth else "unknown"
    params = dict(urllib.parse.parse_qsl(body))
    params.update(urllib.parse.parse_qsl(urllib.parse.urlsplit(entry["url"]).query))
    action = params.pop("Action", None)
    if action is None:
        return None
    return service, action, params
