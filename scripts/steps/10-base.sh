#!/usr/bin/env bash
# Step 1: OS packages, the robot system user and the directory layout.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
load_settings
detect_os

packages=(nginx logrotate openssl)
if [[ $OS_FAMILY == debian ]]; then
    packages+=(python3-venv ufw curl)
    if [[ -n $ROBOT_IMAGE ]]; then packages+=(docker.io); fi
else
    # al2023 ships curl-minimal; python3 includes venv there.
    packages+=(python3 firewalld)
    if [[ -n $ROBOT_IMAGE ]]; then packages+=(docker); fi
fi
system install_packages "${packages[@]}" "${APP_PYTHON_PACKAGES[@]}"

changes=()
if ! system id -u "$ROBOT_USER" >/dev/null 2>&1; then
    system useradd --system --user-group --home-dir /opt/robot --no-create-home \
        --shell /usr/sbin/nologin "$ROBOT_USER"
    changes+=("user $ROBOT_USER")
fi

# ensure_dir PATH MODE OWNER:GROUP: creates or corrects it; records it in changes if it did.
ensure_dir() {
    local path=$1 mode=$2 owner=$3 fixed=0
    [[ -d $path ]] || { mkdir -p "$path"; fixed=1; }
    [[ $(stat -c %a "$path") == "${mode#0}" ]] || { chmod "$mode" "$path"; fixed=1; }
    [[ $(stat -c %U:%G "$path") == "$owner" ]] || { chown "$owner" "$path"; fixed=1; }
    if ((fixed)); then changes+=("${path#"$R"}"); fi
}
robot_owner=$ROBOT_USER:$ROBOT_GROUP
ensure_dir "$OPT_DIR" 0755 root:root
for sub in bin app; do ensure_dir "$OPT_DIR/$sub" 0755 root:root; done
ensure_dir "$CONFIG_DIR" 0750 "root:$ROBOT_GROUP"
for sub in models data; do ensure_dir "$OPT_DIR/$sub" 0750 "$robot_owner"; done
ensure_dir "$LOG_DIR" 0750 "$robot_owner"
ensure_dir "$STATE_DIR" 0750 root:root
ensure_dir "$ETC_ROBOT" 0755 root:root

if ((${#changes[@]})); then log "set up ${changes[*]}"; else log "packages, user and directories already in place"; fi
