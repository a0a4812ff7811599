#!/usr/bin/env bash
# Step 6: the nginx site: port 80 (and 443 when a certificate is on the host) to the robot,
# optional basic auth, per-client limits, real client address behind the load balancer.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
load_settings

auth=off
is_true "$ROBOT_BASIC_AUTH" && auth='"robot"'
# Trust X-Forwarded-For only from the load balancer's network (balanced topology).
real_ip="# no trusted proxy: the client address is the peer address"
if [[ -n $ROBOT_TRUSTED_PROXIES ]]; then
    real_ip=""
    for cidr in $ROBOT_TRUSTED_PROXIES; do real_ip+="set_real_ip_from $cidr;"$'\n'; done
    real_ip+=$'real_ip_header X-Forwarded-For;\nreal_ip_recursive on;'
fi
tls=false
[[ -s $TLS_DIR/fullchain.pem && -s $TLS_DIR/privkey.pem ]] && tls=true
port80=server.conf
$tls && port80=redirect.conf
vars=(--set "NGINX_AUTH_BASIC=$auth" --set "NGINX_REAL_IP=$real_ip" --set "NGINX_PORT80=$port80"
    --set "ROBOT_DDOS_BURST=${ROBOT_DDOS_BURST:-$ROBOT_DDOS_RPS}")

changed=()
render nginx-robot-server.conf "$NGINX_DIR/robot/server.conf" "${vars[@]}" && changed+=(server.conf)
if $tls; then
    render nginx-robot-redirect.conf "$NGINX_DIR/robot/redirect.conf" "${vars[@]}" && changed+=(redirect.conf)
    render nginx-robot-tls.conf "$NGINX_DIR/conf.d/robot-tls.conf" "${vars[@]}" && changed+=(robot-tls.conf)
else
    remove_file "$NGINX_DIR/conf.d/robot-tls.conf" && changed+=(-robot-tls.conf)
    remove_file "$NGINX_DIR/robot/redirect.conf" && changed+=(-redirect.conf)
fi
render nginx-robot.conf "$NGINX_DIR/conf.d/robot.conf" "${vars[@]}" && changed+=(robot.conf)
# Debian's default site also claims default_server on port 80.
remove_file "$NGINX_DIR/sites-enabled/default" && changed+=(-sites-enabled/default)

if [[ $ROBOT_SKIP_SYSTEM != 1 ]]; then
    # Always tested, so a site left broken by an earlier run keeps failing loudly.
    nginx -t -q || die "nginx -t rejects the configuration (see above); nothing reloaded"
    systemctl is-enabled --quiet nginx || systemctl enable --quiet nginx
    if ! systemctl is-active --quiet nginx; then
        systemctl start nginx
    elif ((${#changed[@]})); then
        systemctl reload nginx
    fi
fi
if ((${#changed[@]})); then log "site updated: ${changed[*]} (tls=$tls)"; else log "site unchanged (tls=$tls)"; fi
