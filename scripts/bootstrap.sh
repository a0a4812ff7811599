#!/usr/bin/env bash
# Turns a fresh instance into a running, hardened robot node; safe to run again.
#   sudo bash scripts/bootstrap.sh --source STAGING --settings STAGING/settings.env
# Runs scripts/steps/NN-*.sh in order; each is idempotent and can be run alone.
set -euo pipefail

usage() { echo "usage: $0 [--source DIR] [--settings FILE] [--only STEP]... [--skip STEP]..." >&2; exit 2; }

# STEP is a step's file name without .sh, with or without its number (60-nginx or nginx).
only=()
skip=()
while (($#)); do
    case $1 in
        --source) ROBOT_SOURCE=$(cd "${2:?}" && pwd); shift 2 ;;
        --settings) settings_arg=$(realpath "${2:?}"); shift 2 ;;
        --only) only+=("${2:?}"); shift 2 ;;
        --skip) skip+=("${2:?}"); shift 2 ;;
        *) usage ;;
    esac
done
export ROBOT_SOURCE

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"

# Keep a copy of the settings where steps and init_token.sh find them later.
if [[ -n ${settings_arg:-} ]]; then
    install_file "$settings_arg" "$ROBOT_SETTINGS" 0644 || true  # 1 = already identical
fi
load_settings

started=${EPOCHREALTIME/./}
# matches NAME LIST...: NAME (NN-word) is in LIST as NN-word or word.
matches() {
    local name=$1
    shift
    [[ " $* " == *" $name "* || " $* " == *" ${name#[0-9][0-9]-} "* ]]
}

for step in "$SCRIPTS_DIR"/steps/[0-9][0-9]-*.sh; do
    name=$(basename "$step" .sh)
    if ((${#only[@]})) && ! matches "$name" "${only[@]}"; then continue; fi
    if ((${#skip[@]})) && matches "$name" "${skip[@]}"; then continue; fi
    if ! bash "$step"; then
        echo "[robot-bootstrap] bootstrap stopped: step $name failed (see the FAILED line above)" >&2
        exit 1
    fi
done
elapsed_ms=$(((${EPOCHREALTIME/./} - started) / 1000))
echo "[robot-bootstrap] done in ${elapsed_ms} ms"
