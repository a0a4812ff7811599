#!/usr/bin/env bash
# Step 2: NVIDIA driver, persistence mode and (for a container robot) the docker GPU runtime.
# Does nothing unless ROBOT_GPU=true; skips the driver when nvidia-smi already works.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
load_settings

if ! is_true "$ROBOT_GPU"; then
    log "GPU disabled, nothing to do"
    exit 0
fi
[[ $ROBOT_SKIP_SYSTEM == 1 ]] && { log "GPU step skipped (ROBOT_SKIP_SYSTEM=1)"; exit 0; }
detect_os
done_=()

if ! nvidia-smi -L >/dev/null 2>&1; then
    if [[ $OS_FAMILY == debian ]]; then
        install_packages "${ROBOT_GPU_DRIVER:-nvidia-driver-550-server}"
    else
        # al2023/RHEL: NVIDIA's CUDA repo and its DKMS driver module (ROBOT_GPU_DRIVER is a
        # Debian/Ubuntu package name and does not apply here).
        # shellcheck disable=SC1090
        . "${ROBOT_OS_RELEASE:-/etc/os-release}"
        if [[ ${ID:-} == amzn ]]; then repo=amzn${VERSION_ID%%.*}; else repo=rhel${VERSION_ID%%.*}; fi
        install_packages dnf-plugins-core "kernel-devel-$(uname -r)"
        dnf config-manager --add-repo \
            "https://developer.download.nvidia.com/compute/cuda/repos/$repo/$(uname -m)/cuda-$repo.repo" >/dev/null
        dnf module install -y -q nvidia-driver:latest-dkms >/dev/null
    fi
    modprobe nvidia 2>/dev/null || true
    nvidia-smi -L >/dev/null 2>&1 || die "driver installed but nvidia-smi fails: reboot the instance, then re-run bootstrap"
    done_+=("driver")
fi

if nvidia-smi --query-gpu=persistence_mode --format=csv,noheader | grep -qv Enabled; then
    nvidia-smi -pm 1 >/dev/null
    done_+=("persistence mode")
fi

if [[ -n $ROBOT_IMAGE ]] && ! docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q nvidia; then
    if ! command -v nvidia-ctk >/dev/null; then
        if [[ $OS_FAMILY == debian ]]; then
            keyring=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
            curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey | gpg --dearmor --yes -o "$keyring"
            curl -fsSL https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list |
                sed "s#deb https://#deb [signed-by=$keyring] https://#" >/etc/apt/sources.list.d/nvidia-container-toolkit.list
        else
            curl -fsSL -o /etc/yum.repos.d/nvidia-container-toolkit.repo \
                https://nvidia.github.io/libnvidia-container/stable/rpm/nvidia-container-toolkit.repo
        fi
        install_packages nvidia-container-toolkit
    fi
    nvidia-ctk runtime configure --runtime=docker >/dev/null
    systemctl restart docker
    done_+=("docker GPU runtime")
fi

if ((${#done_[@]})); then log "configured ${done_[*]}"; else log "GPU ready, nothing to change"; fi
