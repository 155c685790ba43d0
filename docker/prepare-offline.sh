#!/usr/bin/env bash
# Builds the node's Docker image with no container registry: from a clean checkout,
#
#   docker/prepare-offline.sh
#
# 1. base image: when `docker image inspect $BASE_IMAGE` fails (default
#    python:3.11-slim-bookworm, the Dockerfile's BASE_IMAGE), debootstraps a minimal Debian
#    bookworm with python3 (3.11) and `docker import`s it under that tag. The rootfs tarball
#    is cached in $LAMINAR_DOCKER_CACHE, so a rerun after `docker rmi` takes seconds.
# 2. wheels: builds on the host, with the repo's .venv python (./scripts/setup.sh creates it),
#    every runtime dependency of the project (the closure of pyproject.toml's dependencies,
#    pinned by requirements.lock; the `test` extra is left out) into docker/.wheels/deps and
#    the project itself into docker/.wheels/project. Skipped when nothing changed.
# 3. image: `docker build --network=none` of docker/Dockerfile, tagged laminar:latest and
#    laminar:<version>; the build installs only from the wheels, so it needs no network.
#
# Idempotent: a rerun with nothing changed does no network access and ends with a cached
# image build. Runs as root (CI), or with sudo for apt-get/debootstrap. Host packages it
# installs with apt-get when missing: debootstrap (base image), gcc and libgmp-dev (wheels
# built from source: fastecdsa).
#
# Environment:
#   BASE_IMAGE             base image tag (default python:3.11-slim-bookworm)
#   LAMINAR_IMAGE          image name (default laminar); tags :latest and :<project version>
#   LAMINAR_DEBIAN_MIRROR  debootstrap mirror (default: the host apt's bookworm mirror,
#                          else http://deb.debian.org/debian)
#   LAMINAR_DOCKER_CACHE   cache dir (default ${XDG_CACHE_HOME:-~/.cache}/laminar-docker)
#   LAMINAR_FORCE_BASE=1   re-create the base image even when the tag exists
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE_IMAGE="${BASE_IMAGE:-python:3.11-slim-bookworm}"
IMAGE="${LAMINAR_IMAGE:-laminar}"
CACHE_DIR="${LAMINAR_DOCKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/laminar-docker}"
WHEELS="$ROOT/docker/.wheels"
SUITE=bookworm
# python3 is 3.11 in bookworm; python-is-python3 gives `python`; python3-venv brings
# ensurepip (the builder stage's `python3 -m venv`); libgmp10 for fastecdsa; zlib1g and
# libstdc++6 are linked by several manylinux wheels (plyvel bundles leveldb and snappy).
BASE_PACKAGES="python3,python3-venv,python-is-python3,ca-certificates,libgmp10,zlib1g,libstdc++6,libgcc-s1"
export DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}"   # the classic builder never contacts a registry for FROM

started=$SECONDS
log() { printf '[prepare-offline %3ds] %s\n' "$((SECONDS - started))" "$*" >&2; }
die() { printf '[prepare-offline] error: %s\n' "$*" >&2; exit 1; }
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else die "need root (or sudo) for: $*"; fi
}
apt_install() {
    log "installing host packages: $* (apt-get)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

command -v docker >/dev/null 2>&1 || die "docker is not installed"
docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info failed)"

mkdir -p "$CACHE_DIR"
# One run at a time per cache (and so at most one image build at a time on a CI machine).
exec 9>"$CACHE_DIR/lock"
if ! flock -n 9; then
    log "another prepare-offline.sh holds $CACHE_DIR/lock; waiting"
    flock 9
fi

# --------------------------------------------------------------------------- base image
host_mirror() {
    local f uri=""
    # one-line format: deb [opts] URI bookworm components
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        uri="$(awk -v s="$SUITE" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
               if ($(i + 1) == s) { print $i; exit } }' "$f")"
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
    # deb822 format: a paragraph with Types: deb and Suites: ... bookworm ...
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        uri="$(awk -v s="$SUITE" 'BEGIN { RS = ""; FS = "\n" }
               { types = ""; suites = ""; uris = ""
                 for (i = 1; i <= NF; i++) {
                   if ($i ~ /^Types:/) types = " " substr($i, 7) " "
                   if ($i ~ /^Suites:/) suites = " " substr($i, 8) " "
                   if ($i ~ /^URIs:/) uris = substr($i, 6) }
                 gsub(/\t/, " ", suites)
                 if (types ~ / deb / && suites ~ (" " s " ")) { split(uris, u, " "); for (k in u) if (u[k] != "") { print u[k]; exit } } }' "$f")"
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
    echo "http://deb.debian.org/debian"
}

cleanup_rootfs() {  # $1: a debootstrap target; unmounts what debootstrap left mounted, then removes it
    local dir="$1" m
    [ -d "$dir" ] || return 0
    # innermost first; never delete through a mount (debootstrap may bind-mount the host's /dev)
    for m in $(awk -v d="$dir" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r); do
        as_root umount -l "$m" || true
    done
    if awk -v d="$dir" 'index($2, d) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
        die "$dir still has mounts; not deleting it"
    fi
    as_root rm -rf --one-file-system "$dir"
}

build_base_image() {
    local mirror key tarball target
    mirror="${LAMINAR_DEBIAN_MIRROR:-$(host_mirror)}"
    key="$(printf '%s|%s|%s|v1' "$mirror" "$SUITE" "$BASE_PACKAGES" | sha256sum | cut -c1-12)"
    tarball="$CACHE_DIR/rootfs-$SUITE-$key.tar"
    if [ -s "$tarball" ]; then
        log "base image: reusing cached rootfs $tarball"
    else
        local tools=() keyring=/usr/share/keyrings/debian-archive-keyring.gpg
        command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || tools+=(debootstrap)
        [ -f "$keyring" ] || tools+=(debian-archive-keyring)   # e.g. on an Ubuntu host
        [ "${#tools[@]}" -eq 0 ] || apt_install "${tools[@]}"
        target="$CACHE_DIR/rootfs-$SUITE-$key.tmp"
        cleanup_rootfs "$target"
        trap 'cleanup_rootfs "$target"' EXIT
        log "base image: debootstrap --variant=minbase $SUITE from $mirror (+ ${BASE_PACKAGES//,/ }); a few minutes"
        if ! as_root env PATH="/usr/sbin:/sbin:$PATH" debootstrap --variant=minbase --keyring="$keyring" --include="$BASE_PACKAGES" \
                "$SUITE" "$target" "$mirror" > "$CACHE_DIR/debootstrap.log" 2>&1; then
            tail -n 30 "$CACHE_DIR/debootstrap.log" >&2
            [ -f "$target/debootstrap/debootstrap.log" ] && tail -n 30 "$target/debootstrap/debootstrap.log" >&2
            die "debootstrap failed (full log: $CACHE_DIR/debootstrap.log)"
        fi
        as_root chroot "$target" python3 -c 'import sys, ensurepip, venv, ssl; assert sys.version_info[:2] == (3, 11), sys.version' \
            || die "the rootfs' python3 is not a working 3.11"
        if awk -v d="$target/" 'index($2, d) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
            die "debootstrap left mounts under $target; not trimming it"
        fi
        log "base image: trimming the rootfs (apt lists and caches, docs, man pages)"
        as_root sh -c "cd '$target' && rm -rf --one-file-system var/lib/apt/lists/* var/cache/apt/*.bin var/cache/apt/archives/*.deb \
            var/cache/debconf/*-old var/log/*.log var/log/apt/* usr/share/doc/* usr/share/man/* usr/share/info/* \
            dev/* && find usr/lib/python3* -name __pycache__ -prune -exec rm -rf {} +"
        # apt sources as in the official image (main, -updates, -security), on the chosen mirror
        as_root sh -c "printf 'deb %s %s main\ndeb %s %s-updates main\ndeb http://deb.debian.org/debian-security %s-security main\n' \
            '$mirror' '$SUITE' '$mirror' '$SUITE' '$SUITE' > '$target/etc/apt/sources.list'"
        log "base image: packing $tarball"
        as_root tar --numeric-owner --one-file-system -C "$target" -cf "$tarball.part" .
        as_root mv "$tarball.part" "$tarball"
        cleanup_rootfs "$target"
        trap - EXIT
    fi
    log "base image: docker import -> $BASE_IMAGE"
    docker import \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'ENV LANG=C.UTF-8' \
        -c 'CMD ["python3"]' \
        -c "LABEL org.opencontainers.image.description=\"Debian $SUITE minbase + python3 (3.11), a local stand-in for python:3.11-slim-bookworm built by laminar docker/prepare-offline.sh\"" \
        -m "laminar prepare-offline.sh: debootstrap $SUITE ($mirror)" \
        "$tarball" "$BASE_IMAGE" >/dev/null
    docker run --rm --network=none "$BASE_IMAGE" python -c 'import sys; print("base image python", sys.version.split()[0])' >&2
}

if [ "${LAMINAR_FORCE_BASE:-0}" != 1 ] && docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "base image: $BASE_IMAGE present, not rebuilt"
else
    build_base_image
fi

# --------------------------------------------------------------------------- wheels
# Build tools for the wheels built from source (fastecdsa needs GMP); setup.sh checks the rest.
need=()
command -v gcc >/dev/null 2>&1 || need+=(gcc)
[ -f /usr/include/gmp.h ] || [ -f "/usr/include/$(uname -m)-linux-gnu/gmp.h" ] || need+=(libgmp-dev)
[ "${#need[@]}" -eq 0 ] || apt_install "${need[@]}"
"$ROOT/scripts/setup.sh"
PY="$ROOT/.venv/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

mkdir -p "$WHEELS/deps" "$WHEELS/project"
# The runtime closure: pyproject.toml's dependencies (no extras of the project), followed
# through the installed distributions' metadata, each pinned to its requirements.lock line.
"$PY" - "$ROOT" > "$WHEELS/requirements-runtime.txt.new" <<'EOF'
import sys, tomllib
from importlib.metadata import distribution, PackageNotFoundError
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

root = sys.argv[1]
with open(f"{root}/pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
lock = {}
for line in open(f"{root}/requirements.lock"):
    line = line.split("#", 1)[0].strip()
    if line:
        name, _, version = line.partition("==")
        lock[canonicalize_name(name)] = (name.strip(), version.strip())

BOOTSTRAP = {"pip", "setuptools", "wheel"}   # vyper needs wheel at run time

def wanted(req, extras):
    return req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras))

seen = {}   # name -> set of extras followed
todo = [Requirement(r) for r in project["dependencies"]]
while todo:
    req = todo.pop()
    if not wanted(req, ()):
        continue
    name = canonicalize_name(req.name)
    extras = set(req.extras)
    if name in seen and extras <= seen[name]:
        continue
    seen.setdefault(name, set()).update(extras)
    try:
        dist = distribution(req.name)
    except PackageNotFoundError:
        sys.exit(f"error: {req.name} is not installed in .venv; run ./scripts/setup.sh")
    if name not in lock and name in BOOTSTRAP:   # pip freeze leaves these out; setup.sh pins them
        lock[name] = (dist.metadata["Name"], dist.version)
    if name not in lock:
        sys.exit(f"error: {req.name} (needed at run time) is not pinned in requirements.lock")
    if dist.version != lock[name][1]:
        sys.exit(f"error: .venv has {req.name} {dist.version}, requirements.lock pins {lock[name][1]}")
    for sub in dist.requires or []:
        sub = Requirement(sub)
        if wanted(sub, seen[name]):
            todo.append(sub)
print("# generated by docker/prepare-offline.sh: the runtime closure of pyproject.toml's dependencies")
for name in sorted(seen):
    print(f"{lock[name][0]}=={lock[name][1]}")
EOF
mv "$WHEELS/requirements-runtime.txt.new" "$WHEELS/requirements-runtime.txt"
n_runtime="$(grep -vc '^#' "$WHEELS/requirements-runtime.txt")"
deps_key="$({ cat "$WHEELS/requirements-runtime.txt"; "$PY" -c 'import sys, sysconfig; print(sys.implementation.cache_tag, sysconfig.get_platform())'; } | sha256sum | cut -d' ' -f1)"
if [ -f "$WHEELS/deps/.stamp" ] && [ "$(cat "$WHEELS/deps/.stamp")" = "$deps_key" ]; then
    log "wheels: $n_runtime runtime dependencies unchanged, reusing $WHEELS/deps"
else
    log "wheels: building $n_runtime runtime dependencies (of $(grep -vc '^#' "$ROOT/requirements.lock") locked; test-only ones left out) into $WHEELS/deps"
    rm -f "$WHEELS/deps/"*.whl "$WHEELS/deps/.stamp"
    "${PIP[@]}" wheel --quiet --no-deps --wheel-dir "$WHEELS/deps" -r "$WHEELS/requirements-runtime.txt"
    cp "$WHEELS/requirements-runtime.txt" "$WHEELS/deps/requirements-runtime.txt"
    echo "$deps_key" > "$WHEELS/deps/.stamp"
fi

# The project wheel, built every run (seconds) from a copy of the tree (no stale build/ in
# the checkout) with fixed timestamps: it replaces docker/.wheels/project only when its bytes
# differ, so edits outside the packages (docs, tests) keep the image layer cached.
src="$(mktemp -d)"
trap 'rm -rf "$src"' EXIT
tar -C "$ROOT" --exclude=./.git --exclude=./.venv --exclude=./docker --exclude=./tests --exclude=./build \
    --exclude=./dist --exclude='*.egg-info' --exclude=__pycache__ --exclude=.pytest_cache --exclude=.hypothesis \
    --exclude=./data -cf - . | tar -C "$src/" -xf -
mkdir "$src/.out"
SOURCE_DATE_EPOCH=315532800 "${PIP[@]}" wheel --quiet --no-deps --no-build-isolation --wheel-dir "$src/.out" "$src" \
    > "$CACHE_DIR/project-wheel.log" 2>&1 || { cat "$CACHE_DIR/project-wheel.log" >&2; die "project wheel build failed"; }
built="$(ls "$src/.out/"*.whl)"
if cmp -s "$built" "$WHEELS/project/$(basename "$built")"; then
    log "wheels: project wheel $(basename "$built") unchanged"
else
    log "wheels: project wheel $(basename "$built") (re)built"
    rm -f "$WHEELS/project/"*.whl "$WHEELS/project/.stamp"
    cp "$built" "$WHEELS/project/"
fi
version="$("$PY" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$ROOT/pyproject.toml")"
rm -rf "$src"
trap - EXIT

# --------------------------------------------------------------------------- image
log "image: docker build --network=none -f docker/Dockerfile -> $IMAGE:latest, $IMAGE:$version (BASE_IMAGE=$BASE_IMAGE)"
previous="$(docker image inspect --format '{{.Id}}' "$IMAGE:latest" 2>/dev/null || true)"
if ! docker build --network=none --build-arg "BASE_IMAGE=$BASE_IMAGE" -f "$ROOT/docker/Dockerfile" \
        -t "$IMAGE:latest" -t "$IMAGE:$version" "$ROOT" 2>&1 | sed -u 's/^/    /' >&2; then
    die "docker build failed"
fi
current="$(docker image inspect --format '{{.Id}}' "$IMAGE:latest")"
# the image this build replaced, now untagged: remove it (not the builder stage: that is the cache)
if [ -n "$previous" ] && [ "$previous" != "$current" ] \
        && [ "$(docker image inspect --format '{{len .RepoTags}}' "$previous" 2>/dev/null)" = 0 ]; then
    docker rmi "$previous" >/dev/null 2>&1 && log "image: removed the replaced image ${previous#sha256:}" || true
fi
size="$(docker image inspect --format '{{.Size}}' "$IMAGE:latest")"
log "done: $IMAGE:latest = $IMAGE:$version ($((size / 1000000)) MB), base $BASE_IMAGE; run it with: docker run --rm -p 127.0.0.1:8545:8545 $IMAGE:latest"
