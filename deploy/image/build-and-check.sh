#!/usr/bin/env bash
# Build deploy/Dockerfile as it is, plain and with EXTRAS=demo, then run both images and check them.
#
# CI reaches no container registry, so the Dockerfile's python:3.11-slim-bookworm cannot be
# pulled. The base is made here instead, from Debian's packages: debootstrap (minbase, bookworm)
# with python3, pip, venv, python-is-python3 and passwd, committed as a local image and passed
# as PYTHON_IMAGE. Two details make it behave like python:*-slim:
#   - Debian's EXTERNALLY-MANAGED marker is removed, or the Dockerfile's pip install stops on
#     PEP 668 (the slim image's Python is its own, not Debian's);
#   - the host's CA bundle and pip configuration are copied in, and the local directories that
#     configuration names are mounted read-only into the build, so pip inside the build reaches
#     the package index the way pip outside it does.
#
# Each image then runs chroot-isolated (`buildah run --isolation chroot`; `podman run` needs
# setrlimit, which some machines refuse) in a network namespace of its own: port 10071 is free
# there, so the image's HEALTHCHECK command runs unchanged, and nothing leaves the machine.
# Checked: the HEALTHCHECK command passes, the exporter process runs as uid 10071, and the demo
# image's /metrics serves the demo's tuning jobs.
#
# Needs root, debootstrap, buildah and iproute2 (.ci/run installs them). Run from anywhere:
#   deploy/image/build-and-check.sh        (make image-check)
# Environment: DEBIAN_MIRROR is the Debian mirror to debootstrap from (default: the one apt's
# lists name for bookworm's main component; with neither, the script stops before it makes
# anything: run apt-get update first, or set DEBIAN_MIRROR); KEEP_IMAGES=1 keeps the images
# afterwards; BASE_IMAGE=<image> builds on that image instead of making one (a base kept by
# KEEP_IMAGES=1, to check a change to the Dockerfile quickly).
set -euo pipefail

readonly SUITE=bookworm
readonly BASE_PACKAGES=python3,python3-pip,python3-venv,python-is-python3,passwd
readonly EXPORTER_UID=10071
readonly RUN_ID="$$"
readonly GIVEN_BASE_IMAGE="${BASE_IMAGE:-}"
readonly BASE_IMAGE="${BASE_IMAGE:-localhost/sagemaker-tuning-exporter-base:python3-$SUITE-$RUN_ID}"
readonly PLAIN_IMAGE="localhost/sagemaker-tuning-exporter:check-$RUN_ID"
readonly DEMO_IMAGE="localhost/sagemaker-tuning-exporter:check-demo-$RUN_ID"
readonly NETNS="sagemaker-tuning-exporter-check-$RUN_ID"
# How long an image may take to answer its HEALTHCHECK and to publish the demo's jobs.
readonly READY_SECONDS=90

containers=()
images=()
# The `buildah run` of the exporter being checked, and its working container.
running_pid=""
running_container=""
# Logs of debootstrap, the builds and the runs; failures print their last lines.
WORK_DIR=""

log() { printf '== %s\n' "$*"; }
fail() {
    printf 'image check FAILED: %s\n' "$*" >&2
    exit 1
}

cleanup() {
    local status=$?
    stop_exporter
    for container in "${containers[@]}"; do
        buildah rm "$container" >/dev/null 2>&1 || true
    done
    if [[ "${KEEP_IMAGES:-}" != 1 ]]; then
        for image in "${images[@]}"; do
            buildah rmi "$image" >/dev/null 2>&1 || true
        done
    fi
    ip netns delete "$NETNS" 2>/dev/null || true
    if [[ -n "$WORK_DIR" ]]; then
        rm -rf "$WORK_DIR"
    fi
    exit "$status"
}

stop_exporter() {
    if [[ -n "$running_pid" ]]; then
        kill "$running_pid" 2>/dev/null || true
        wait "$running_pid" 2>/dev/null || true
        running_pid=""
    fi
}

require_tools() {
    [[ "$(id -u)" == 0 ]] || fail "run as root: debootstrap and buildah's chroot isolation need it"
    local tool
    for tool in debootstrap buildah ip python3; do
        command -v "$tool" >/dev/null ||
            fail "$tool is missing (Debian: apt-get install debootstrap buildah iproute2)"
    done
}

# The Debian mirror to debootstrap $SUITE from: DEBIAN_MIRROR, or else the one apt's lists
# name for $SUITE's main component. No mirror is assumed: the machine's apt configuration
# says which one it may reach.
debian_mirror() {
    if [[ -n "${DEBIAN_MIRROR:-}" ]]; then
        echo "$DEBIAN_MIRROR"
        return
    fi
    local mirror
    # Without apt's lists (no apt-get update yet), or without apt, nothing matches.
    # shellcheck disable=SC2016 # $(REPO_URI) is apt's field, not the shell's.
    mirror="$(apt-get indextargets --format '$(REPO_URI)' 'Created-By: Packages' \
        "Release: $SUITE" 'Label: Debian' 'Component: main' 2>/dev/null | head -n 1)" || true
    [[ -n "$mirror" ]] || fail "no Debian mirror: apt's lists name none for $SUITE main" \
        "(are they empty?); run apt-get update, or set DEBIAN_MIRROR to a Debian mirror's URL"
    echo "$mirror"
}

# pip's configuration here (its files and PIP_* variables) as key=value lines.
pip_settings() {
    python3 -m pip config list 2>/dev/null | sed -E "s/^[^.]+\.([a-z-]+)='(.*)'$/\1=\2/"
}

# The local paths the values of these pip settings name (file:// URLs included).
pip_paths_of() {
    local keys="$1"
    pip_settings | sed -n -E "s/^($keys)=//p" | tr ' ' '\n' | sed 's|^file://||' | grep '^/' || true
}

# Copy a host file or directory into the base at the same place; the home directory is /root.
copy_into_base() {
    local rootfs="$1" path="$2" target
    target="$rootfs${path/#"$HOME"//root}"
    mkdir -p "$(dirname "$target")"
    cp -a "$path" "$target"
}

make_base_image() {
    local mirror="$1" container rootfs
    container="$(buildah from scratch)"
    containers+=("$container")
    rootfs="$(buildah mount "$container")"
    log "debootstrap --variant=minbase $SUITE from $mirror"
    debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$rootfs" "$mirror" \
        >"$WORK_DIR/debootstrap.log" 2>&1 ||
        fail "debootstrap failed; its last lines:$(printf '\n'; tail -n 20 "$WORK_DIR/debootstrap.log")"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

    local marker
    marker="$(find "$rootfs/usr/lib" -maxdepth 2 -path '*/python3*/EXTERNALLY-MANAGED' | head -n 1)"
    [[ -n "$marker" ]] || fail "no EXTERNALLY-MANAGED marker in the base: did python3 install?"
    rm "$marker"

    # Debian keeps local CAs in this bundle (update-ca-certificates): pip in the base uses it.
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
    local path
    for path in /etc/pip.conf /etc/xdg/pip "$HOME/.config/pip" "$HOME/.pip" \
        $(pip_paths_of 'cert|client-cert|constraint|requirement'); do
        if [[ -e "$path" ]]; then
            copy_into_base "$rootfs" "$path"
        fi
    done
    buildah umount "$container" >/dev/null

    local config=(--env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
        --env LANG=C.UTF-8 --cmd python3)
    local name
    for name in $(compgen -e | grep '^PIP_' || true); do
        config+=(--env "$name=${!name}")
    done
    buildah config "${config[@]}" "$container"
    buildah commit --quiet --rm "$container" "$BASE_IMAGE" >/dev/null
    images+=("$BASE_IMAGE")
}

# --volume options for the local directories pip's configuration names: find-links
# directories, and the directory above a file:// index, whose pages link to files beside it.
pip_directory_volumes() {
    local path
    for path in $(pip_paths_of 'find-links') $(pip_paths_of 'index-url|extra-index-url' |
        xargs -r -n 1 dirname); do
        if [[ -d "$path" && "$path" != / ]]; then
            echo "--volume=$path:$path:ro"
        fi
    done | sort -u
}

build_image() {
    local tag="$1" extras="$2" volumes
    local log_file="$WORK_DIR/build-${extras:-plain}.log"
    mapfile -t volumes < <(pip_directory_volumes)
    log "buildah bud deploy/Dockerfile EXTRAS=${extras:-(none)} -> $tag"
    buildah bud --isolation chroot --format docker --pull=never \
        --build-arg "PYTHON_IMAGE=$BASE_IMAGE" --build-arg "EXTRAS=$extras" \
        "${volumes[@]}" -f deploy/Dockerfile -t "$tag" . >"$log_file" 2>&1 ||
        fail "building deploy/Dockerfile (EXTRAS=$extras) failed; its last lines:$(
            printf '\n'
            tail -n 30 "$log_file"
        )"
    images+=("$tag")
    log "$tag: $(buildah images --format '{{.Size}}' "$tag")"
}

# A field of the image's Docker configuration, as JSON.
image_config() {
    buildah inspect --type image "$1" |
        python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["Docker"]["config"].get(sys.argv[1])))' "$2"
}

# Start the image's entrypoint with the given arguments in the network namespace.
start_exporter() {
    local image="$1" container entrypoint
    shift
    container="$(buildah from --pull=never "$image")"
    containers+=("$container")
    mapfile -t entrypoint < <(image_config "$image" Entrypoint | python3 -c \
        'import json, sys; print("\n".join(json.load(sys.stdin) or []))')
    [[ ${#entrypoint[@]} -gt 0 ]] || fail "$image has no ENTRYPOINT"
    log "$image: ${entrypoint[*]} $*"
    ip netns exec "$NETNS" buildah run --isolation chroot "$container" -- \
        "${entrypoint[@]}" "$@" >"$WORK_DIR/run.log" 2>&1 &
    running_pid=$!
    running_container="$container"
}

# Run the image's HEALTHCHECK command inside the running container until it passes.
check_healthcheck_passes() {
    local image="$1" test_command started=$SECONDS
    mapfile -t test_command < <(image_config "$image" Healthcheck | python3 -c '
import json, sys
test = (json.load(sys.stdin) or {}).get("Test") or []
if test[:1] == ["CMD-SHELL"]:
    test = ["/bin/sh", "-c", test[1]]
print("\n".join(test[1:] if test[:1] == ["CMD"] else test))')
    [[ ${#test_command[@]} -gt 0 ]] ||
        fail "$image has no HEALTHCHECK (built with --format docker?)"
    until ip netns exec "$NETNS" buildah run --isolation chroot "$running_container" -- \
        "${test_command[@]}" >/dev/null 2>&1; do
        kill -0 "$running_pid" 2>/dev/null ||
            fail "$image exited before its HEALTHCHECK passed; its log:$(printf '\n'; cat "$WORK_DIR/run.log")"
        ((SECONDS - started < READY_SECONDS)) ||
            fail "$image's HEALTHCHECK did not pass within ${READY_SECONDS} s: ${test_command[*]}
the exporter's log:$(printf '\n'; tail -n 20 "$WORK_DIR/run.log")"
        sleep 1
    done
    log "$image: HEALTHCHECK passed after $((SECONDS - started)) s: ${test_command[*]}"
}

# The exporter is the innermost process under `buildah run`; its real, effective, saved and
# file-system uids must all be the image's user.
check_runs_as_exporter_user() {
    local image="$1" pid="$running_pid" child uids
    while child="$(pgrep -P "$pid" | head -n 1)" && [[ -n "$child" ]]; do
        pid="$child"
    done
    grep -q sagemaker-tuning-exporter "/proc/$pid/cmdline" ||
        fail "$image: process $pid is not the exporter: $(tr '\0' ' ' <"/proc/$pid/cmdline")"
    uids="$(awk '/^Uid:/ {print $2, $3, $4, $5}' "/proc/$pid/status")"
    [[ "$uids" == "$EXPORTER_UID $EXPORTER_UID $EXPORTER_UID $EXPORTER_UID" ]] ||
        fail "$image: the exporter (pid $pid) runs with uids $uids, not $EXPORTER_UID"
    log "$image: the exporter (pid $pid) runs as uid $EXPORTER_UID"
}

# /metrics, fetched in the namespace, carries the demo's sagemaker_tuning_jobs series.
check_metrics_serve_demo_jobs() {
    local image="$1" started=$SECONDS series
    until series="$(ip netns exec "$NETNS" python3 -c '
import urllib.request
body = urllib.request.urlopen("http://127.0.0.1:10071/metrics", timeout=30).read().decode()
print(sum(line.startswith("sagemaker_tuning_jobs{") for line in body.splitlines()))' 2>/dev/null)" &&
        ((series > 0)); do
        ((SECONDS - started < READY_SECONDS)) ||
            fail "$image: /metrics had no sagemaker_tuning_jobs series within ${READY_SECONDS} s"
        sleep 1
    done
    log "$image: /metrics serves $series sagemaker_tuning_jobs series"
}

main() {
    cd "$(dirname "${BASH_SOURCE[0]}")/../.."
    trap cleanup EXIT
    require_tools
    local mirror=""
    if [[ -z "$GIVEN_BASE_IMAGE" ]]; then
        # Before anything is made: without a mirror there is nothing to check.
        mirror="$(debian_mirror)"
    fi
    WORK_DIR="$(mktemp -d)"
    ip netns add "$NETNS"
    ip netns exec "$NETNS" ip link set lo up

    local started=$SECONDS
    if [[ -z "$GIVEN_BASE_IMAGE" ]]; then
        make_base_image "$mirror"
    fi
    log "base image $BASE_IMAGE: $(buildah images --format '{{.Size}}' "$BASE_IMAGE"), $((SECONDS - started)) s"

    started=$SECONDS
    build_image "$PLAIN_IMAGE" ""
    log "plain image built in $((SECONDS - started)) s"
    # The default command: the example configuration, and no AWS reachable in the
    # namespace; the exporter must still start and answer its health check.
    local default_command
    mapfile -t default_command < <(image_config "$PLAIN_IMAGE" Cmd | python3 -c \
        'import json, sys; print("\n".join(json.load(sys.stdin) or []))')
    start_exporter "$PLAIN_IMAGE" "${default_command[@]}"
    check_healthcheck_passes "$PLAIN_IMAGE"
    check_runs_as_exporter_user "$PLAIN_IMAGE"
    stop_exporter

    started=$SECONDS
    build_image "$DEMO_IMAGE" demo
    log "demo image built in $((SECONDS - started)) s"
    start_exporter "$DEMO_IMAGE" --demo
    check_healthcheck_passes "$DEMO_IMAGE"
    check_metrics_serve_demo_jobs "$DEMO_IMAGE"
    check_runs_as_exporter_user "$DEMO_IMAGE"
    stop_exporter
    log "image check passed"
}

# Sourced rather than run, the script defines its functions only (tests/test_deploy_image.py
# calls debian_mirror so).
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
