"""A fake EC2 instance metadata service (IMDSv2 only) for one lab node, on its own loopback.

    node.popen([python, "fake_imds.py", "--port", "8169", "--region", "us-east-1",
                "--instance-id", "i-0a", "--mac", "0e:..", "--eni", "eni-0a", "--local-ipv4", "10.77.0.11"])

Like the real one (with HttpTokens=required): PUT /latest/api/token with a TTL header returns a
token; every GET without a valid token is 401. Serves the identity the failover program reads
and instance-role credentials (dummy, for moto) so boto3 finds them the way it does on EC2.
"""

from __future__ import annotations

import argparse
import datetime
import http.server
import json
import secrets


def build_tree(args: argparse.Namespace) -> dict[str, str]:
    expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=6)
    credentials = {
        "Code": "Success",
        "Type": "AWS-HMAC",
        "AccessKeyId": "testing",
        "SecretAccessKey": "testing",
        "Token": "testing",
        "LastUpdated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    md = "/latest/meta-data/"
    return {
        md + "instance-id": args.instance_id,
        md + "mac": args.mac,
        md + "local-ipv4": args.local_ipv4,
        md + "placement/region": args.region,
        md + f"network/interfaces/macs/{args.mac}/interface-id": args.eni,
        md + f"network/interfaces/macs/{args.mac}/local-ipv4s": args.local_ipv4,
        md + "iam/security-credentials/": "robot-node",
        md + "iam/security-credentials/robot-node": json.dumps(credentials),
    }


def make_handler(tree: dict[str, str]) -> type[http.server.BaseHTTPRequestHandler]:
    tokens: set[str] = set()

    class Handler(http.server.BaseHTTPRequestHandler):
        def reply(self, status: int, body: str = "") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self) -> None:
            if self.path != "/latest/api/token":
                return self.reply(404)
            ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
            if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                return self.reply(400)
            token = secrets.token_urlsafe(32)
            tokens.add(token)
            self.reply(200, token)

        def do_GET(self) -> None:
            if self.headers.get("X-aws-ec2-metadata-token") not in tokens:
                return self.reply(401)
            value = tree.get(self.path)
            self.reply(200, value) if value is not None else self.reply(404)

        def log_message(self, *args: object) -> None:  # quiet: tests read the failover log instead
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    for name in ("region", "instance-id", "mac", "eni", "local-ipv4"):
        parser.add_argument(f"--{name}", required=True)
    args = parser.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(build_tree(args)))
    server.serve_forever()


if __name__ == "__main__":
    main()
