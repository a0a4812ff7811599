# shellcheck shell=bash disable=SC2034  # paths and variables used by the steps that source this
# Shared by bootstrap.sh and every step: settings, paths, OS family, logging, rendering.
# Sourced, never run. Overrides for tests (see scripts/README.md):
#   ROBOT_ROOT         prefix for every host path (/opt/robot, /etc/nginx, ...); empty on a host
#   ROBOT_SKIP_SYSTEM  1 = skip package installs, useradd, systemctl, firewall changes
#   ROBOT_USER/GROUP   the service account (default robot:robot)
#   ROBOT_PYTHON       interpreter with boto3 (default the app venv's python)
#   ROBOT_OS_RELEASE   os-release file used to detect the OS family

SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export ROBOT_SOURCE=${ROBOT_SOURCE:-$(dirname "$SCRIPTS_DIR")}
export ROBOT_ROOT=${ROBOT_ROOT:-}
export ROBOT_SKIP_SYSTEM=${ROBOT_SKIP_SYSTEM:-0}
R=$ROBOT_ROOT

OPT_DIR=$R/opt/robot
CONFIG_DIR=$OPT_DIR/config
ENV_FILE=$CONFIG_DIR/.env
APP_DIR=$OPT_DIR/app
VENV_DIR=$APP_DIR/venv
LOG_DIR=$R/var/log/robot
STATE_DIR=$R/var/lib/robot
ETC_ROBOT=$R/etc/robot
TLS_DIR=$ETC_ROBOT/tls
NGINX_DIR=$R/etc/nginx
UNIT_DIR=$R/etc/systemd/system
LOGROTATE_DIR=$R/etc/logrotate.d
# Marker left by a step whose change needs a robot restart; the service step consumes it.
RESTART_MARKER=$STATE_DIR/restart-needed

export ROBOT_SETTINGS=${ROBOT_SETTINGS:-$ETC_ROBOT/settings.env}
export ROBOT_USER=${ROBOT_USER:-robot}
export ROBOT_GROUP=${ROBOT_GROUP:-$ROBOT_USER}
export ROBOT_PYTHON=${ROBOT_PYTHON:-$VENV_DIR/bin/python}
STEP=$(basename "$0" .sh)

log() { printf '[robot-bootstrap] %s: %s\n' "$STEP" "$*"; }
die() { printf '[robot-bootstrap] %s: FAILED: %s\n' "$STEP" "$*" >&2; exit 1; }

# Runs a system-level command, or nothing when ROBOT_SKIP_SYSTEM=1 (tests).
system() {
    [[ $ROBOT_SKIP_SYSTEM == 1 ]] && return 0
    "$@"
}

load_settings() {
    [[ -r $ROBOT_SETTINGS ]] || die "settings file $ROBOT_SETTINGS not readable (pass --settings)"
    # Non-secret KEY=VALUE file written by the Pulumi program; values are shell-quoted.
    set -a
    # shellcheck disable=SC1090
    . "$ROBOT_SETTINGS"
    set +a
    : "${ROBOT_TOPOLOGY:=single}" "${ROBOT_PORT:=18789}" "${ROBOT_HEALTH_PATH:=/health}"
    : "${ROBOT_IMAGE:=}" "${ROBOT_BASIC_AUTH:=false}" "${ROBOT_GPU:=false}"
    : "${ROBOT_DDOS_RPS:=1000}" "${ROBOT_DDOS_CONN_PER_IP:=500}" "${ROBOT_TRUSTED_PROXIES:=}"
    : "${ROBOT_EXPOSE_PORT:=false}"
}

# OS_FAMILY=debian|rhel from os-release ID / ID_LIKE.
detect_os() {
    local file=${ROBOT_OS_RELEASE:-/etc/os-release} id="" like=""
    [[ -r $file ]] || die "cannot read $file to detect the OS"
    # shellcheck disable=SC1090
    id=$(. "$file" && echo "${ID:-}")
    # shellcheck disable=SC1090
    like=$(. "$file" && echo "${ID_LIKE:-}")
    case " $id $like " in
        *" debian "* | *" ubuntu "*) OS_FAMILY=debian ;;
        *" rhel "* | *" fedora "* | *" centos "* | *" amzn "*) OS_FAMILY=rhel ;;
        *) die "unsupported OS '$id' (need Debian/Ubuntu or RHEL-family/al2023)" ;;
    esac
    if [[ $OS_FAMILY == debian ]]; then NGINX_GROUP=www-data; else NGINX_GROUP=nginx; fi
    NGINX_GROUP=${ROBOT_NGINX_GROUP:-$NGINX_GROUP}
    # The robot needs Python >= 3.11; where the system python3 is older (Ubuntu 22.04: 3.10,
    # al2023: 3.9) the distribution's python3.11 package runs the app venv instead.
    local version
    # shellcheck disable=SC1090
    version=$(. "$file" && echo "${ID:-}-${VERSION_ID:-}")
    case $version in
        ubuntu-22.04) APP_PYTHON=python3.11 APP_PYTHON_PACKAGES=(python3.11 python3.11-venv) ;;
        amzn-2023) APP_PYTHON=python3.11 APP_PYTHON_PACKAGES=(python3.11) ;;
        *) APP_PYTHON=python3 APP_PYTHON_PACKAGES=() ;;
    esac
}

# Installs the packages that are missing (no package-manager call when none is).
install_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        if [[ $OS_FAMILY == debian ]]; then
            dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
        else
            rpm -q "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
        fi
    done
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]}"
    if [[ $OS_FAMILY == debian ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
    else
        dnf install -y -q "${missing[@]}" >/dev/null
    fi
}

# render TEMPLATE DEST [render.py options]: returns 0 if DEST changed, 1 if not.
render() {
    local template=$1 dest=$2 out
    shift 2
    out=$(python3 "$SCRIPTS_DIR/render.py" "$SCRIPTS_DIR/templates/$template" "$dest" \
        --settings "$ROBOT_SETTINGS" --set "R=$R" "$@") || die "rendering $template failed"
    [[ $out == changed* ]]
}

# install_file SRC DEST MODE: copies SRC over DEST if content or mode differ; 0 if changed.
install_file() {
    local src=$1 dest=$2 mode=$3
    if cmp -s "$src" "$dest" && [[ $(stat -c %a "$dest") == "${mode#0}" ]]; then
        return 1
    fi
    install -D -m "$mode" "$src" "$dest"
}

# remove_file PATH: deletes PATH if present; 0 if it was there.
remove_file() {
    [[ -e $1 || -L $1 ]] || return 1
    rm -f "$1"
}

is_true() { [[ ${1,,} == true || $1 == 1 || ${1,,} == yes ]]; }
