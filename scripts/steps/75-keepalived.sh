#!/usr/bin/env bash
# Step 8: pair topology only: keepalived (VIP failover) via scripts/keepalived/install.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
load_settings

if [[ $ROBOT_TOPOLOGY != pair ]]; then
    log "topology $ROBOT_TOPOLOGY: no keepalived"
    exit 0
fi
installer=$SCRIPTS_DIR/keepalived/install.sh
[[ -f $installer ]] || die "pair topology but $installer is missing from the staged scripts"
bash "$installer" --settings "$ROBOT_SETTINGS" || die "keepalived install failed (see its output above)"
log "keepalived configured by $installer"
