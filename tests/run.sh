#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian/Ubuntu machine, then runs them all.
#   sudo bash tests/run.sh [pytest args]
# Host tests create network namespaces and start nginx/keepalived, hence root.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $EUID -ne 0 ]]; then
    echo "tests/run.sh: run as root (host tests create network namespaces)" >&2
    exit 1
fi

mapfile -t packages < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' tests/apt-packages.txt)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "tests/run.sh: installing ${missing[*]}"
    # Packages must not start their daemons here (nginx would take port 80 of this machine):
    # tests start nginx and keepalived themselves, inside namespaces.
    own_policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [[ -n $own_policy ]]; then rm -f /usr/sbin/policy-rc.d; fi
fi

if [[ ! -x venv/bin/python ]]; then
    python3 -m venv venv
fi
venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt

exec venv/bin/python -m pytest "$@"
