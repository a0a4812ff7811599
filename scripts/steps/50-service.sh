#!/usr/bin/env bash
# Step 5: the systemd unit `robot`; (re)starts the robot only when the unit or its code changed.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
load_settings

listen=127.0.0.1
is_true "$ROBOT_EXPOSE_PORT" && listen=0.0.0.0
private_devices=yes
gpu_args=""
if is_true "$ROBOT_GPU"; then
    private_devices=no   # the robot needs /dev/nvidia*
    gpu_args="--gpus all"
fi
template=robot.service
docker=/usr/bin/docker
if [[ -n $ROBOT_IMAGE ]]; then
    template=robot-image.service
    docker=$(command -v docker || echo /usr/bin/docker)
fi

unit=$UNIT_DIR/robot.service
action="unchanged"
if render "$template" "$unit" --set "ROBOT_LISTEN=$listen" --set "PRIVATE_DEVICES=$private_devices" \
    --set "DOCKER_GPU_ARGS=$gpu_args" --set "DOCKER=$docker" --set "ROBOT_USER=$ROBOT_USER" --set "ROBOT_GROUP=$ROBOT_GROUP"; then
    action="written"
    system systemctl daemon-reload
    touch "$RESTART_MARKER"
fi

if [[ $ROBOT_SKIP_SYSTEM != 1 ]]; then
    if ! systemctl is-enabled --quiet robot; then
        systemctl enable --quiet robot
    fi
    if [[ -e $RESTART_MARKER ]]; then
        systemctl restart robot
        action="restarted"
    elif ! systemctl is-active --quiet robot; then
        systemctl start robot
        action="started"
    fi
fi
rm -f "$RESTART_MARKER"
log "unit $unit $action"
