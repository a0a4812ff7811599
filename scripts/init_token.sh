#!/usr/bin/env bash
# Generates a new 32-character access token, stores it in the robot's Secrets Manager secret,
# rewrites /opt/robot/config/.env and reloads the robot. Never prints the token.
#   sudo /opt/robot/bin/init_token.sh
# Needs secretsmanager:PutSecretValue on the secret for the instance role.
set -euo pipefail
bin=$(cd "$(dirname "$0")" && pwd)
opt=$(dirname "$bin")
root=${ROBOT_ROOT:-}
settings=${ROBOT_SETTINGS:-$root/etc/robot/settings.env}
python=${ROBOT_PYTHON:-$opt/app/venv/bin/python}
user=${ROBOT_USER:-robot}

"$python" "$bin/robot_secrets.py" rotate-token --settings "$settings" \
    --env-file "$opt/config/.env" --owner "$user:${ROBOT_GROUP:-$user}" >/dev/null
if [[ ${ROBOT_SKIP_SYSTEM:-0} != 1 ]] && systemctl is-active --quiet robot; then
    systemctl reload-or-restart robot
fi
# shellcheck disable=SC1090
secret_id=$(. "$settings" && echo "${ROBOT_SECRET_ID:-}")
echo "New token stored in Secrets Manager ($secret_id, key ROBOT_TOKEN) and in $opt/config/.env."
echo "Read it with: sudo grep ^ROBOT_TOKEN= $opt/config/.env"
