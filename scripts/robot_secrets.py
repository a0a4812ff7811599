#!/usr/bin/env python3
"""Secrets Manager -> the robot's env file (and nginx's htpasswd), never printing a value.

    robot_secrets.py fetch  --settings FILE --env-file PATH --owner U:G [--htpasswd PATH --htpasswd-owner U:G]
    robot_secrets.py rotate-token ...same options...

`fetch` reads the secret named by ROBOT_SECRET_ID (JSON: API_KEY, API_SECRET, ROBOT_TOKEN, and
BASIC_AUTH_USER / BASIC_AUTH_PASSWORD when ROBOT_BASIC_AUTH=true) with the instance role
(boto3 finds it through IMDSv2; ROBOT_IMDS_ENDPOINT overrides the metadata address and
AWS_ENDPOINT_URL the API address, for tests). It retries transient failures with exponential
backoff, then writes the files atomically, mode 0600 / 0640, only if their content differs,
printing "changed PATH" or "unchanged PATH" so the caller reloads the robot only when needed.
`rotate-token` stores a new random 32-character ROBOT_TOKEN in the secret, then does `fetch`.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import string
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from render import install, read_settings  # noqa: E402  (installed next to this file)

ENV_KEYS = ("API_KEY", "API_SECRET", "ROBOT_TOKEN")
AUTH_KEYS = ("BASIC_AUTH_USER", "BASIC_AUTH_PASSWORD")
TOKEN_ALPHABET = string.ascii_letters + string.digits
TOKEN_LENGTH = 32


class SecretError(Exception):
    """A problem worth one line on stderr; never carries a secret value."""


def client(region: str):
    if os.environ.get("ROBOT_IMDS_ENDPOINT"):
        os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = os.environ["ROBOT_IMDS_ENDPOINT"]
    import boto3
    from botocore.config import Config

    # boto3 reads AWS_ENDPOINT_URL itself; its own retries cover throttling and 5xx.
    return boto3.client("secretsmanager", region_name=region, config=Config(retries={"mode": "standard"}))


def with_backoff(action, what: str):
    """Run action(); retry missing credentials / unreachable endpoints (a booting instance)."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError

    attempts = int(os.environ.get("ROBOT_SECRET_ATTEMPTS", "6"))
    delay = float(os.environ.get("ROBOT_SECRET_BACKOFF", "1"))
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except ClientError as exc:  # the API answered: retrying will not help
            error = exc.response.get("Error", {})
            raise SecretError(f"{what}: {error.get('Code', 'error')}: {error.get('Message', '')}") from None
        except (NoCredentialsError, EndpointConnectionError, ReadTimeoutError) as exc:
            if attempt == attempts:
                raise SecretError(f"{what}: {type(exc).__name__} after {attempts} attempts") from None
            print(f"robot-secrets: {what}: {type(exc).__name__}, retrying in {delay:g}s", file=sys.stderr)
            time.sleep(delay)
            delay *= 2


def read_secret(sm, secret_id: str) -> dict[str, str]:
    response = with_backoff(lambda: sm.get_secret_value(SecretId=secret_id), "reading the secret")
    try:
        value = json.loads(response["SecretString"])
    except (KeyError, ValueError):
        raise SecretError("the secret's SecretString is not a JSON object") from None
    if not isinstance(value, dict):
        raise SecretError("the secret's SecretString is not a JSON object")
    return {k: str(v) for k, v in value.items()}


def env_content(values: dict[str, str]) -> str:
    lines = ["# Written by robot_secrets.py from Secrets Manager; edits are overwritten."]
    for key in ENV_KEYS:
        value = values[key]
        # Raw values (docker --env-file does not unquote); refuse what cannot round-trip.
        if "\n" in value or value != value.strip():
            raise SecretError(f"{key} contains a newline or surrounding whitespace")
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def htpasswd_content(user: str, password: str, current: str | None) -> str:
    """user:$6$... (SHA-512 crypt, which nginx checks with crypt()); keeps the old line if it matches."""
    if ":" in user or "\n" in user:
        raise SecretError("BASIC_AUTH_USER contains ':' or a newline")
    if current and current.startswith(f"{user}:$6$"):
        salt = current.split("$")[2]
        if _sha512_crypt(password, salt) == current.strip().split(":", 1)[1]:
            return current
    return f"{user}:{_sha512_crypt(password, secrets.token_hex(8))}\n"


def _sha512_crypt(password: str, salt: str) -> str:
    # The password goes through stdin, never argv.
    out = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"], input=password + "\n",
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def write_files(values: dict[str, str], args, settings: dict[str, str]) -> None:
    required = list(ENV_KEYS)
    basic_auth = settings.get("ROBOT_BASIC_AUTH", "false").lower() == "true"
    if basic_auth:
        required += AUTH_KEYS
    missing = [k for k in required if not values.get(k)]
    if missing:
        raise SecretError(f"the secret lacks {', '.join(missing)}")
    changed = install(env_content(values), args.env_file, 0o600, args.owner)
    print(("changed " if changed else "unchanged ") + args.env_file)
    if basic_auth and args.htpasswd:
        try:
            with open(args.htpasswd, encoding="utf-8") as fh:
                current = fh.read()
        except FileNotFoundError:
            current = None
        content = htpasswd_content(values["BASIC_AUTH_USER"], values["BASIC_AUTH_PASSWORD"], current)
        changed = install(content, args.htpasswd, 0o640, args.htpasswd_owner)
        print(("changed " if changed else "unchanged ") + args.htpasswd)


def new_token() -> str:
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("fetch", "rotate-token"))
    parser.add_argument("--settings", required=True)
    parser.add_argument("--env-file", required=True)
    parser.add_argument("--owner", required=True, help="USER:GROUP of the env file")
    parser.add_argument("--htpasswd", help="nginx basic-auth file (written when ROBOT_BASIC_AUTH=true)")
    parser.add_argument("--htpasswd-owner", default="root:root")
    args = parser.parse_args(argv)
    try:
        settings = read_settings(args.settings)
        secret_id = settings.get("ROBOT_SECRET_ID")
        if not secret_id:
            raise SecretError(f"ROBOT_SECRET_ID is not set in {args.settings}")
        sm = client(settings.get("AWS_REGION") or os.environ.get("AWS_REGION") or "us-east-1")
        values = read_secret(sm, secret_id)
        if args.command == "rotate-token":
            values["ROBOT_TOKEN"] = new_token()
            body = json.dumps(values)
            with_backoff(lambda: sm.put_secret_value(SecretId=secret_id, SecretString=body), "storing the new token")
        write_files(values, args, settings)
    except (SecretError, OSError, ValueError, subprocess.CalledProcessError) as exc:
        print(f"robot-secrets: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
