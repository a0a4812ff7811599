#!/usr/bin/env bash
# Step 3: the robot itself (bundled robot/ in a venv, or the operator's container image),
# and the venv with boto3 that the secret fetcher runs in (needed in both cases).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
load_settings
detect_os

changes=()
src=$ROBOT_SOURCE/robot
[[ -f $src/__main__.py ]] || die "no robot/ package in $ROBOT_SOURCE (pass --source STAGING)"
if ! diff -rq -x __pycache__ "$src" "$APP_DIR/robot" >/dev/null 2>&1; then
    # Swap in a complete copy so a running robot never imports half-copied code.
    rm -rf "$APP_DIR/robot.new"
    cp -r "$src" "$APP_DIR/robot.new"
    find "$APP_DIR/robot.new" -name __pycache__ -prune -exec rm -rf {} +
    chmod -R u=rwX,go=rX "$APP_DIR/robot.new"
    rm -rf "$APP_DIR/robot"
    mv "$APP_DIR/robot.new" "$APP_DIR/robot"
    changes+=("robot code")
    [[ -n $ROBOT_IMAGE ]] || touch "$RESTART_MARKER"
fi

# The venv is rebuilt only when its requirements change (stamp = their checksum).
requirements=("boto3>=1.28")
[[ -n $ROBOT_IMAGE ]] || mapfile -t -O 1 requirements < <(grep -Ev '^\s*(#|$)' "$src/requirements.txt")
stamp=$(printf '%s\n' "${requirements[@]}" | sha256sum | cut -d' ' -f1)
if [[ $ROBOT_SKIP_SYSTEM != 1 && $(cat "$VENV_DIR/.robot-requirements" 2>/dev/null) != "$stamp" ]]; then
    "$APP_PYTHON" -m venv "$VENV_DIR"
    "$VENV_DIR/bin/pip" install -q --disable-pip-version-check "${requirements[@]}"
    echo "$stamp" >"$VENV_DIR/.robot-requirements"
    changes+=("venv")
    [[ -n $ROBOT_IMAGE ]] || touch "$RESTART_MARKER"
fi

if [[ -n $ROBOT_IMAGE ]]; then
    # A moving tag (":latest") is not re-pulled on later runs: pin a version to upgrade.
    if ! system docker image inspect "$ROBOT_IMAGE" >/dev/null 2>&1; then
        system docker pull -q "$ROBOT_IMAGE" >/dev/null
        changes+=("image $ROBOT_IMAGE")
        touch "$RESTART_MARKER"
    fi
fi

if ((${#changes[@]})); then log "installed ${changes[*]}"; else log "robot already installed"; fi
