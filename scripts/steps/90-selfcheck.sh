#!/usr/bin/env bash
# Step 10: /health through nginx must answer {"status":"ok"} within ROBOT_SELFCHECK_TIMEOUT
# seconds (default 60); otherwise exit non-zero with the likely cause (the guide's table).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
load_settings

url=${ROBOT_SELFCHECK_URL:-http://127.0.0.1${ROBOT_HEALTH_PATH}}
timeout=${ROBOT_SELFCHECK_TIMEOUT:-60}
body=$(mktemp)
trap 'rm -f "$body"' EXIT
deadline=$((SECONDS + timeout))
while :; do
    code=$(curl -s -o "$body" -w '%{http_code}' --max-time 5 "$url" || true)
    if [[ $code == 200 ]] && tr -d ' \n' <"$body" | grep -q '"status":"ok"'; then
        log "$url answers {\"status\":\"ok\"}"
        exit 0
    fi
    ((SECONDS < deadline)) || break
    sleep 1
done
case $code in
    000) hint="no answer from nginx: check 'systemctl status nginx', the host firewall and the security group" ;;
    502 | 504) hint="nginx is up but the robot is not: 'systemctl status robot', 'journalctl -u robot', $LOG_DIR/robot.log" ;;
    401 | 403) hint="refused by auth: the token/basic-auth settings (step 40-secrets) or nginx's site" ;;
    429) hint="rate limited: ROBOT_DDOS_RPS / ROBOT_DDOS_CONN_PER_IP too low" ;;
    *) hint="unexpected answer: see $LOG_DIR/robot.log and nginx's error log" ;;
esac
die "GET $url gave HTTP $code after ${timeout}s: $hint"
