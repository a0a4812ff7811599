#!/usr/bin/env bash
# Step 7: host firewall (ufw on Debian/Ubuntu, firewalld on RHEL-family): only the configured
# ports from the configured networks, VRRP from the peer in a pair. The applied rule set is
# kept in /etc/robot/firewall.rules; a run changes the firewall only when that set changes.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
load_settings
detect_os

[[ -n ${ROBOT_SSH_CIDRS:-} ]] || die "ROBOT_SSH_CIDRS is empty: refusing to firewall off SSH"
web_from=${ROBOT_ALLOWED_CIDRS:-}
# Behind the load balancer only its network (the VPC) talks to nginx.
[[ $ROBOT_TOPOLOGY == balanced && -n $ROBOT_TRUSTED_PROXIES ]] && web_from=$ROBOT_TRUSTED_PROXIES
[[ -n $web_from ]] || die "ROBOT_ALLOWED_CIDRS is empty: nobody could reach the robot"

# One rule per line: PROTO PORT SOURCE (PORT "-" for a whole protocol).
desired_rules() {
    local cidr
    for cidr in $ROBOT_SSH_CIDRS; do echo "tcp 22 $cidr"; done
    for cidr in $web_from; do
        echo "tcp 80 $cidr"
        if [[ -s $TLS_DIR/fullchain.pem ]]; then echo "tcp 443 $cidr"; fi
        if is_true "$ROBOT_EXPOSE_PORT"; then echo "tcp $ROBOT_PORT $cidr"; fi
    done
    if [[ $ROBOT_TOPOLOGY == pair ]]; then echo "vrrp - ${ROBOT_PEER_IP:?pair topology needs ROBOT_PEER_IP}"; fi
}

ufw_args() { # PROTO PORT SOURCE -> ufw rule words (ufw cannot name protocol 112: allow the peer)
    if [[ $1 == vrrp ]]; then echo "allow from $3"; else echo "allow proto $1 from $3 to any port $2"; fi
}
rich_rule() { # PROTO PORT SOURCE -> firewalld rich rule
    local family=ipv4
    [[ $3 == *:* ]] && family=ipv6
    if [[ $1 == vrrp ]]; then
        echo "rule family=\"$family\" source address=\"$3\" protocol value=\"vrrp\" accept"
    else
        echo "rule family=\"$family\" source address=\"$3\" port port=\"$2\" protocol=\"$1\" accept"
    fi
}

apply_ufw() { # OLD_FILE NEW_FILE
    local rule
    # shellcheck disable=SC2046,SC2086  # rule words are meant to split
    while read -r rule; do ufw delete $(ufw_args $rule) >/dev/null; done < <(comm -23 "$1" "$2")
    # shellcheck disable=SC2046,SC2086
    while read -r rule; do ufw $(ufw_args $rule) comment robot >/dev/null; done < <(comm -13 "$1" "$2")
    if ! ufw status | grep -q '^Status: active'; then
        ufw default deny incoming >/dev/null
        ufw default allow outgoing >/dev/null
        ufw --force enable >/dev/null
    fi
}

apply_firewalld() { # OLD_FILE NEW_FILE
    local rule
    systemctl is-active --quiet firewalld || systemctl enable --now --quiet firewalld
    # shellcheck disable=SC2086
    while read -r rule; do firewall-cmd -q --permanent --remove-rich-rule="$(rich_rule $rule)"; done < <(comm -23 "$1" "$2")
    # shellcheck disable=SC2086
    while read -r rule; do firewall-cmd -q --permanent --add-rich-rule="$(rich_rule $rule)"; done < <(comm -13 "$1" "$2")
    # The default zone lets SSH in from anywhere; our rules allow it from ROBOT_SSH_CIDRS only.
    if firewall-cmd -q --permanent --query-service=ssh; then firewall-cmd -q --permanent --remove-service=ssh; fi
    firewall-cmd -q --reload
}

state=$ETC_ROBOT/firewall.rules
new=$(mktemp)
old=$(mktemp)
trap 'rm -f "$new" "$old"' EXIT
desired_rules | sort -u >"$new"
[[ -f $state ]] && cp "$state" "$old"

if cmp -s "$old" "$new"; then
    log "firewall unchanged ($(wc -l <"$new") rules)"
    exit 0
fi
if [[ $ROBOT_SKIP_SYSTEM != 1 ]]; then
    if [[ $OS_FAMILY == debian ]]; then apply_ufw "$old" "$new"; else apply_firewalld "$old" "$new"; fi
fi
install -m 0644 "$new" "$state"
log "firewall updated: +$(comm -13 "$old" "$new" | wc -l) -$(comm -23 "$old" "$new" | wc -l) rules"
