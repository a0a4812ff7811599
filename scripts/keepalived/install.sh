#!/usr/bin/env bash
# Sets up this node of the robot's keepalived VIP pair; safe to run again (changes nothing twice).
#   sudo bash scripts/keepalived/install.sh --settings /etc/robot/settings.env
# Installs keepalived, renders its config for this node, installs the failover program and its
# reconcile timer, and (re)starts keepalived only when one of its files changed.
# Test overrides: ROBOT_ROOT (prefix for every host path), ROBOT_SKIP_SYSTEM=1 (no package
# install, no systemctl), ROBOT_PYTHON (interpreter with boto3), ROBOT_IMDS_ENDPOINT and
# AWS_ENDPOINT_URL (local fakes, written into the failover program's config).
set -euo pipefail

settings=""
while (($#)); do
    case $1 in
        --settings) settings=${2:?--settings needs a file}; shift 2 ;;
        *) echo "usage: $0 --settings FILE" >&2; exit 2 ;;
    esac
done
[[ -n $settings ]] || { echo "usage: $0 --settings FILE" >&2; exit 2; }
export ROBOT_SETTINGS=$settings

# The bootstrap's shared paths, logging, settings loader and install helpers.
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
load_settings
detect_os
STEP=keepalived  # log lines read "[robot-bootstrap] keepalived: ..."

KA_DIR=$R/etc/keepalived
VIP_BIN=$OPT_DIR/bin
VIP_CONFIG=$KA_DIR/robot-vip.env
VIP_RUN_DIR=$R/run/robot-vip
VIP_LOG_DIR=$LOG_DIR

for key in ROBOT_PAIR_ROLE ROBOT_SELF_IP ROBOT_PEER_IP ROBOT_VIP ROBOT_EIP_ALLOCATION_ID; do
    [[ -n ${!key:-} ]] || die "$key is not set in $settings (needed for the pair topology)"
done
case $ROBOT_PAIR_ROLE in
    primary) priority=150 ;;
    backup) priority=100 ;;
    *) die "ROBOT_PAIR_ROLE must be primary or backup, not '$ROBOT_PAIR_ROLE'" ;;
esac

step_package() {
    if ! command -v keepalived >/dev/null; then
        [[ $ROBOT_SKIP_SYSTEM == 1 ]] && die "keepalived is not installed (and ROBOT_SKIP_SYSTEM=1)"
        install_packages keepalived
    fi
    log "package: keepalived $(keepalived --version 2>&1 | head -1 | cut -d' ' -f2) present"
}

step_interface() {
    # The interface holding this node's own address carries VRRP and the VIP.
    interface=$(ip -o -4 addr show | awk -v ip="$ROBOT_SELF_IP" '{split($4, a, "/"); if (a[1] == ip) {print $2; exit}}')
    [[ -n $interface ]] || die "no interface has ROBOT_SELF_IP $ROBOT_SELF_IP"
    log "interface: $interface has $ROBOT_SELF_IP ($ROBOT_PAIR_ROLE, VRRP priority $priority)"
}

# ka_render TEMPLATE DEST MODE: 0 if DEST changed (common.sh's render, with this node's values).
ka_render() {
    render "../keepalived/templates/$1" "$2" --mode "$3" \
        --set "VRRP_PRIORITY=$priority" --set "VRRP_INTERFACE=$interface" \
        --set "ROBOT_PYTHON=$ROBOT_PYTHON" --set "VIP_BIN=$VIP_BIN" --set "VIP_CONFIG=$VIP_CONFIG" \
        --set "VIP_RUN_DIR=$VIP_RUN_DIR" --set "VIP_LOG_DIR=$VIP_LOG_DIR" --set "VIP_LOG=$VIP_LOG_DIR/vip-failover.log" \
        --set "ROBOT_IMDS_ENDPOINT=${ROBOT_IMDS_ENDPOINT:-http://169.254.169.254}" \
        --set "AWS_ENDPOINT_URL=${AWS_ENDPOINT_URL:-}" \
        --set "ROBOT_PORT=$ROBOT_PORT" --set "ROBOT_HEALTH_PATH=$ROBOT_HEALTH_PATH" \
        --set "ROBOT_VRRP_ADVERT_INTERVAL=${ROBOT_VRRP_ADVERT_INTERVAL:-0.1}" \
        --set "ROBOT_VRRP_ROUTER_ID=${ROBOT_VRRP_ROUTER_ID:-51}"
}

step_files() {
    mkdir -p "$KA_DIR" "$VIP_BIN" "$VIP_RUN_DIR" "$VIP_LOG_DIR" "$UNIT_DIR/keepalived.service.d"
    changed=() restart_keepalived=0 reload_units=0
    if ka_render keepalived.conf "$KA_DIR/keepalived.conf" 0644; then changed+=(keepalived.conf) restart_keepalived=1; fi
    if ka_render robot-vip.env "$VIP_CONFIG" 0644; then changed+=(robot-vip.env) restart_keepalived=1; fi
    if install_file "$SCRIPTS_DIR/keepalived/vip_failover.py" "$VIP_BIN/robot-vip-failover" 0755; then
        changed+=(robot-vip-failover) restart_keepalived=1 # keepalived runs it: a restart picks up new code
    fi
    if ka_render keepalived-robot.conf "$UNIT_DIR/keepalived.service.d/robot.conf" 0644; then
        changed+=(keepalived.service.d/robot.conf) restart_keepalived=1 reload_units=1
    fi
    for unit in robot-vip-reconcile.service robot-vip-reconcile.timer; do
        if ka_render "$unit" "$UNIT_DIR/$unit" 0644; then changed+=("$unit") reload_units=1; fi
    done
    if ((${#changed[@]})); then log "files: updated ${changed[*]}"; else log "files: all up to date"; fi
    # keepalived's own parser is the judge of the rendered config.
    keepalived -t -f "$KA_DIR/keepalived.conf" || die "keepalived -t rejects $KA_DIR/keepalived.conf"
    log "config: keepalived -t accepts $KA_DIR/keepalived.conf"
}

step_services() {
    if [[ $ROBOT_SKIP_SYSTEM == 1 ]]; then
        log "services: skipped (ROBOT_SKIP_SYSTEM=1)"
        return
    fi
    if ((reload_units)); then systemctl daemon-reload; fi
    if ! systemctl is-enabled --quiet robot-vip-reconcile.timer || ! systemctl is-active --quiet robot-vip-reconcile.timer; then
        systemctl enable --now --quiet robot-vip-reconcile.timer
        log "services: reconcile timer enabled"
    fi
    systemctl is-enabled --quiet keepalived || systemctl enable --quiet keepalived
    if ((restart_keepalived)); then
        # On the current master this is a graceful handover to the peer (~0.1 s), not an outage.
        systemctl restart keepalived
        log "services: keepalived restarted"
    elif ! systemctl is-active --quiet keepalived; then
        systemctl start keepalived
        log "services: keepalived started"
    else
        log "services: keepalived running, nothing changed"
    fi
}

step_package
step_interface
step_files
step_services
