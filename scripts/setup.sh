#!/usr/bin/env bash
# Takes a Debian bookworm machine to a working `cai` with a Docker engine:
#   1. uses an engine that already answers, else installs docker.io and starts dockerd;
#   2. provides the base image: a registry's debian:bookworm-slim when one is reachable,
#      else a debootstrap (minbase) root filesystem imported with `docker import`,
#      cached so that a reused machine skips debootstrap;
#   3. installs cai into .venv and links it onto PATH;
#   4. builds the agent image and runs `cai doctor`.
# Re-running it is cheap: every step checks before it acts.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# What the agent image needs from its base. The tag carries a hash of the list, so that a reused
# machine builds a new base (and cache) when the list changes.
base_packages=openssh-server,iproute2,procps,bash,tar,gzip,python3-venv,tmux
base_image=${CAI_BASE_IMAGE:-cai-base:bookworm-$(printf '%s' "$base_packages" | sha256sum | cut -c1-8)}
cache_dir=${CAI_CACHE_DIR:-/var/cache/cai}
dockerd_log=${CAI_DOCKERD_LOG:-/var/log/cai-dockerd.log}

say() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_ready=0
apt_install() {
    if [ "$apt_ready" -eq 0 ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_ready=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

ensure_engine() {
    if command -v docker >/dev/null 2>&1 && engine_answers; then
        say "Docker engine answers; using it"
        return
    fi
    if ! command -v dockerd >/dev/null 2>&1; then
        say "installing Debian's docker.io"
        apt_install docker.io
    fi
    if ! engine_answers; then
        say "starting dockerd (log: $dockerd_log)"
        as_root bash -c "nohup dockerd --storage-driver=overlay2 >>'$dockerd_log' 2>&1 &"
        for _ in $(seq 1 60); do
            engine_answers && break
            sleep 0.5
        done
        engine_answers || die "dockerd did not start; see $dockerd_log"
    fi
    say "Docker engine is up: $(docker version --format '{{.Server.Version}}')"
}

ensure_client_tools() {
    local missing=()
    command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
    { command -v ss && command -v ip; } >/dev/null 2>&1 || missing+=(iproute2)
    command -v zsh >/dev/null 2>&1 || missing+=(zsh)
    command -v git >/dev/null 2>&1 || missing+=(git)
    command -v rsync >/dev/null 2>&1 || missing+=(rsync)  # the tests copy trees with rsync -e ssh
    command -v tmux >/dev/null 2>&1 || missing+=(tmux)  # the tests drive interactive sessions in it
    command -v strace >/dev/null 2>&1 || missing+=(strace)  # the tests count the processes a TAB starts
    # The tests' remote engine host (tests/integration/remote_host.py): an sshd and a dockerd in
    # namespaces made with unshare, a veth to them made with ip (iproute2, above).
    command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
    command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)  # its TLS engine's certificates
    if [ "${#missing[@]}" -gt 0 ]; then
        say "installing ${missing[*]}"
        apt_install "${missing[@]}"
    fi
}

# The first bookworm (not -security) mirror in apt's configured sources, read at run time.
apt_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk '
            BEGIN { RS=""; FS="\n" }
            {
                uris=""; suites=""; types=""
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^URIs:/)   { uris = $i;   sub(/^URIs:[ \t]*/, "", uris) }
                    if ($i ~ /^Suites:/) { suites = $i; sub(/^Suites:[ \t]*/, "", suites) }
                    if ($i ~ /^Types:/)  { types = $i;  sub(/^Types:[ \t]*/, "", types) }
                }
                if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ / bookworm /) {
                    split(uris, u, " "); print u[1]; exit
                }
            }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        awk '$1 == "deb" {
                 i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                 if ($(i + 1) == "bookworm") { print $i; exit }
             }' "$f"
    done
}

ensure_base_image() {
    if docker image inspect "$base_image" >/dev/null 2>&1; then
        say "base image $base_image is present"
        return
    fi
    if [ -z "${CAI_BASE_IMAGE:-}" ] && timeout 120 docker pull -q debian:bookworm-slim >/dev/null 2>&1; then
        say "a registry answers; using debian:bookworm-slim as the base"
        base_image=debian:bookworm-slim
        return
    fi
    local cache="$cache_dir/${base_image//[:\/]/-}.rootfs.tar.gz"
    if [ ! -s "$cache" ]; then
        command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
        local mirror
        mirror=$(apt_mirror | head -n 1)
        [ -n "$mirror" ] || die "no bookworm mirror found in apt's sources"
        local rootfs
        rootfs=$(mktemp -d /var/tmp/cai-rootfs.XXXXXX)
        say "debootstrap bookworm (minbase) into $rootfs"
        as_root debootstrap --variant=minbase \
            --include="$base_packages" \
            bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
            || { tail -n 20 "$rootfs.log" >&2; die "debootstrap failed"; }
        # apt lists and caches only make the image bigger.
        as_root rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
        as_root mkdir -p "$cache_dir"
        as_root tar -C "$rootfs" -czf "$cache.tmp" .
        as_root mv "$cache.tmp" "$cache"
        as_root rm -rf "$rootfs" "$rootfs.log"
    else
        say "importing the cached root filesystem $cache"
    fi
    docker import - "$base_image" <"$cache" >/dev/null
    say "base image $base_image imported"
}

python_for_venv() {
    local py
    for py in python3.13 python3.12 python3.11 python3; do
        command -v "$py" >/dev/null 2>&1 || continue
        # Resolve shims (pyenv) to the real interpreter so the venv does not start one.
        "$py" -c 'import sys; assert sys.version_info >= (3, 11); print(sys.executable)' 2>/dev/null && return
    done
    apt_install python3 python3-venv
    python3 -c 'import sys; print(sys.executable)'
}

ensure_cai() {
    local venv="$repo/.venv"
    if [ ! -x "$venv/bin/python" ]; then
        local py
        py=$(python_for_venv)
        "$py" -m venv "$venv" 2>/dev/null || { apt_install python3-venv; "$py" -m venv "$venv"; }
    fi
    say "installing cai into $venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$repo[test]"
    local bindir=/usr/local/bin
    [ "$(id -u)" -eq 0 ] || bindir="$HOME/.local/bin"
    mkdir -p "$bindir"
    ln -sf "$venv/bin/cai" "$bindir/cai"
    say "cai is at $bindir/cai"
}

ensure_engine
ensure_client_tools
ensure_base_image
ensure_cai
# No agents in the suite's image: installing one takes 15-45 s and 400 MB, and only
# tests/integration/test_image_build.py needs one (it builds `--agents claude` once per run).
"$repo/.venv/bin/cai" image build --base "$base_image"
"$repo/.venv/bin/cai" doctor
