#!/usr/bin/env bash
# Step 9: /etc/logrotate.d/robot with the guide's rules for /var/log/robot/*.log.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
load_settings

if render logrotate-robot "$LOGROTATE_DIR/robot"; then
    log "wrote $LOGROTATE_DIR/robot"
else
    log "$LOGROTATE_DIR/robot unchanged"
fi
