#!/usr/bin/env bash
# Step 4: API_KEY, API_SECRET, ROBOT_TOKEN (and the basic-auth password) from Secrets Manager
# into /opt/robot/config/.env and nginx's htpasswd; reloads the robot only if .env changed.
# Also installs the fetcher and /opt/robot/bin/init_token.sh for later rotations.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
load_settings
detect_os

installed=()
install_file "$SCRIPTS_DIR/render.py" "$OPT_DIR/bin/render.py" 0644 && installed+=(render.py)
install_file "$SCRIPTS_DIR/robot_secrets.py" "$OPT_DIR/bin/robot_secrets.py" 0755 && installed+=(robot_secrets.py)
install_file "$SCRIPTS_DIR/init_token.sh" "$OPT_DIR/bin/init_token.sh" 0750 && installed+=(init_token.sh)

out=$("$ROBOT_PYTHON" "$OPT_DIR/bin/robot_secrets.py" fetch --settings "$ROBOT_SETTINGS" \
    --env-file "$ENV_FILE" --owner "$ROBOT_USER:$ROBOT_GROUP" \
    --htpasswd "$NGINX_DIR/robot.htpasswd" --htpasswd-owner "root:$NGINX_GROUP") ||
    die "could not fetch the secret $ROBOT_SECRET_ID (instance role, region $AWS_REGION, network to Secrets Manager?)"

changed=()
while read -r state path; do
    [[ $state == changed ]] && changed+=("$(basename "$path")")
done <<<"$out"
if [[ " ${changed[*]} " == *" .env "* ]]; then
    # SIGHUP makes the robot re-read .env; a container robot is restarted instead.
    # On a first run the unit does not exist yet: the service step starts it.
    if system systemctl is-active --quiet robot; then
        system systemctl reload-or-restart robot
    fi
fi
if ((${#changed[@]} + ${#installed[@]})); then
    log "updated ${changed[*]} ${installed[*]}"
else
    log "secrets and tools unchanged"
fi
