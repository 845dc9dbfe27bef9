#!/usr/bin/env bash
# Start a private Docker engine and build the Overlord minion images. Idempotent: a second
# run reuses the running engine, the cached base rootfs and the built images' layers.
#
# Needs root (apt-get, dockerd). Works offline from image registries: the base image is
# built with debootstrap from Debian's package mirror and imported locally.
# The last line printed is the DOCKER_HOST to export, e.g.:
#   eval "$(.ci/docker.sh | tail -n 1)"
#
# Settings (environment): OVERLORD_DOCKER_DIR (default /tmp/overlord-docker),
# OVERLORD_CACHE_DIR (default /var/cache/overlord), OVERLORD_BASE_IMAGE
# (default localhost/overlord-base:bookworm), DEBIAN_MIRROR (default deb.debian.org).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="${OVERLORD_DOCKER_DIR:-/tmp/overlord-docker}"
SOCK="$STATE_DIR/docker.sock"
HOST="unix://$SOCK"
CACHE_DIR="${OVERLORD_CACHE_DIR:-/var/cache/overlord}"
BASE_IMAGE="${OVERLORD_BASE_IMAGE:-localhost/overlord-base:bookworm}"
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
export DEBIAN_FRONTEND=noninteractive

log() { echo "[docker.sh] $*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and starts dockerd)"

# 1. Packages: docker.io (dockerd, containerd, runc, docker CLI) and debootstrap.
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
# Prefer Debian's CLI (matches the daemon's API version); any docker CLI will do.
DOCKER_BIN="$(command -v /usr/bin/docker || command -v docker)" || die "no docker CLI found"
docker_() { "$DOCKER_BIN" -H "$HOST" "$@"; }

# 2. The engine, on a private socket, detached from this shell so it outlives the script.
if docker_ version >/dev/null 2>&1; then
    log "dockerd already answers on $HOST"
else
    mkdir -p "$STATE_DIR"
    if [ -f "$STATE_DIR/docker.pid" ] && kill -0 "$(cat "$STATE_DIR/docker.pid")" 2>/dev/null; then
        die "dockerd (pid $(cat "$STATE_DIR/docker.pid")) runs but does not answer; see $STATE_DIR/dockerd.log"
    fi
    rm -f "$SOCK" "$STATE_DIR/docker.pid"
    log "starting dockerd on $HOST (log: $STATE_DIR/dockerd.log)"
    setsid nohup dockerd \
        --data-root "$STATE_DIR/root" --exec-root "$STATE_DIR/exec" \
        --pidfile "$STATE_DIR/docker.pid" -H "$HOST" \
        --iptables=false --ip-masq=false --bridge=none \
        >>"$STATE_DIR/dockerd.log" 2>&1 </dev/null &
    for _ in $(seq 1 120); do
        docker_ version >/dev/null 2>&1 && break
        sleep 0.5
    done
    docker_ version >/dev/null 2>&1 || die "dockerd did not answer within 60 s; see $STATE_DIR/dockerd.log"
    log "dockerd is up"
fi

# 3. The local base image (Debian minbase + python3 + git), from a cached rootfs tarball.
if docker_ image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "base image $BASE_IMAGE present"
else
    tarball="$CACHE_DIR/overlord-base-$SUITE.tar"
    if [ ! -s "$tarball" ]; then
        mkdir -p "$CACHE_DIR"
        rootfs="$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")"
        trap 'rm -rf "$rootfs"' EXIT
        log "debootstrap $SUITE into $rootfs (about a minute)"
        debootstrap --variant=minbase --include=git,python3,passwd "$SUITE" "$rootfs" "$MIRROR" >&2
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
        tar -C "$rootfs" -c . >"$tarball.tmp"
        mv "$tarball.tmp" "$tarball"
        rm -rf "$rootfs"
        trap - EXIT
    fi
    log "importing $tarball as $BASE_IMAGE"
    docker_ import -c 'CMD ["/bin/bash"]' - "$BASE_IMAGE" <"$tarball" >/dev/null
fi

# 4. The minion images. The context is the repository root, restricted to the files the
#    Dockerfiles use (sent as a tar on stdin) so that .venv and friends are not uploaded.
for tier in local cloud; do
    image="overlord-minion-$tier:latest"
    log "building $image"
    tar -C "$ROOT" --exclude=__pycache__ -c overlord/minion_runtime "workers/Dockerfile.$tier" |
        docker_ build -q -f "workers/Dockerfile.$tier" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
            -t "$image" - >/dev/null
done
log "images: $(docker_ image ls --format '{{.Repository}}:{{.Tag}}' | grep overlord | tr '\n' ' ')"

echo "export DOCKER_HOST=$HOST"
