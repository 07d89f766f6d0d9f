#!/usr/bin/env bash
# Image check: builds the container image from the repository's one Dockerfile and runs
# it the way the Helm chart does, then checks what a first `helm install` would otherwise be the
# first to learn. Needs root (dockerd, debootstrap); every wait is bounded; on failure the work
# dir is kept and every container, server and daemon this script started is stopped.
#
#   1. tools: docker.io (dockerd + a BuildKit-capable client), debootstrap, jq, binutils, a
#      nats-server (apt); cargo-auditable and cargo-cyclonedx (crates.io, pinned); the chart
#      tools (scripts/chart/chart-tools.sh); vx-load (this workspace, debug build).
#   2. dockerd --iptables=false --bridge=none --storage-driver=vfs, when no daemon answers
#      (stopped at the end only if this script started it; its log: $CACHE/dockerd.log).
#   3. base images, made here since public registries are out of reach, cached in docker and as
#      tarballs in $CACHE (default ~/.cache/vx-bridge/image):
#        build    debootstrap'ed Debian bookworm (minbase + gcc, libc6-dev, ca-certificates) with
#                 this machine's Rust toolchain (same version as the Dockerfile's RUST_VERSION)
#                 and cargo-auditable: in place of rust:<RUST_VERSION>-bookworm
#        runtime  a distroless/cc-debian12:nonroot equivalent: the same Debian packages' files
#                 (libc6, libgcc-s1, libstdc++6, libgomp1, libssl3, CA certificates, tzdata,
#                 netbase, base-files), /etc/passwd and /etc/group with nonroot 65532, no shell,
#                 no package manager
#   4. docker build of ./Dockerfile with --build-arg BUILD_IMAGE / RUNTIME_IMAGE (BuildKit,
#      --network host for crates.io); `docker save` to target/image/vx-bridge-<tag>.tar.
#   5. supply chain: the binary's .dep-v0 section (cargo auditable) read and counted; the SBOM
#      (cargo cyclonedx, CycloneDX 1.5 JSON) written to target/image/vx-bridge.cdx.json; every
#      crate compiled into the binary must be in the SBOM.
#   6. the chart rendered with the README's install flags (helm template); the container runs
#      as its main Deployment: its args, UID/GID, read-only root, capabilities dropped,
#      no-new-privileges, memory limit, config file from the ConfigMap, secrets as files, config
#      from the environment (VXB_NATS__URL, VXB_HTTP__LISTEN: host network), against a
#      nats-server this script starts on a free port (never 4222).
#   7. checks, each on a value: the probes' paths answer 200, /readyz's fields; the process is
#      PID 1, UID/GID 65532, no capabilities, no_new_privs, root mounted read-only; a signed
#      webhook answered 202 is in the stream; `docker stop -t <grace>` under 64 connections of
#      webhooks: exit 0 within the grace period, every 202 stored (vx-load verify), no request
#      hangs, the log says it drained; `docker diff` empty (also for a run with a writable root);
#      no shell (`--entrypoint /bin/sh` fails, none in the exported filesystem); sizes.
#
# Usage: scripts/chart/image-check.sh          (as root; VXB_IMAGE_CACHE, VXB_IMAGE_REPOSITORY,
#        VXB_IMAGE_TAG, VXB_DEBIAN_MIRROR, VXB_IMAGE_BUILD_TIMEOUT, NATS_SERVER may be set)
# Output: one line per check, then a one-line summary with the figures and the total time.
set -euo pipefail
VX_WORK_TAG=image
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$VX_ROOT"

START=$SECONDS
CACHE=${VXB_IMAGE_CACHE:-$HOME/.cache/vx-bridge/image}
OUT=$VX_ROOT/target/image
SUITE=bookworm
MIRROR=${VXB_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The local bases' recipes: bump one when make_bases changes that base, so its cached copy is
# remade (each base is kept while its own recipe holds: a new build base means a cold build).
BUILD_RECIPE=2
RUNTIME_RECIPE=3
CRATE_VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
REPO=${VXB_IMAGE_REPOSITORY:-vx-bridge}
TAG=${VXB_IMAGE_TAG:-$CRATE_VERSION}
IMAGE=$REPO:$TAG
RUST_ARG=$(sed -n 's/^ARG RUST_VERSION=//p' Dockerfile)
AUDITABLE_VERSION=$(sed -n 's/^ARG CARGO_AUDITABLE_VERSION=//p' Dockerfile)
CYCLONEDX_VERSION=0.5.9
BUILD_TIMEOUT=${VXB_IMAGE_BUILD_TIMEOUT:-3600}
SECRET=$REL_SECRET   # the Standard Webhooks secret vx-load signs with (lib.sh)
mkdir -p "$CACHE" "$OUT"
# One run at a time per machine: runs share the daemon (the first to finish would stop the one it
# started under the other), the image tag and the build's cache mounts (one cargo target dir).
exec 9>"$CACHE/lock"
if ! flock -n 9; then
  log "waiting for another image check to finish (lock $CACHE/lock)"
  flock -w 3600 9 || die "another image check held $CACHE/lock for an hour"
fi

phase() { printf '\n== %s (%ss)\n' "$1" "$((SECONDS - START))"; }
ok() { printf '  ok    %s\n' "$*"; }
fig() { printf '  ----  %s\n' "$*"; }

# ---------------------------------------------------------------- cleanup
DOCKER=docker
dk() { timeout 300 "$DOCKER" "$@"; }   # every docker call is bounded (the build: BUILD_TIMEOUT)
DOCKERD_PID=""
CONTAINERS=()
image_cleanup() {
  local c
  for c in "${CONTAINERS[@]:-}"; do
    if [[ -n "$c" ]]; then timeout 30 "$DOCKER" rm -f "$c" >/dev/null 2>&1 || true; fi
  done
  rm -f "$VX_ROOT/vx-bridge_bin.cdx.json" "$VX_ROOT/tools/vx-load/vx-load_bin.cdx.json" \
    "$VX_ROOT/crates/testkit/vx-testkit_bin.cdx.json"
  if [[ -n "$DOCKERD_PID" ]]; then
    kill -TERM "$DOCKERD_PID" 2>/dev/null || true
    for _ in $(seq 1 300); do
      kill -0 "$DOCKERD_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$DOCKERD_PID" 2>/dev/null || true
    wait "$DOCKERD_PID" 2>/dev/null || true
  fi
}
trap 'image_cleanup; vx_cleanup' EXIT

# ---------------------------------------------------------------- 1. tools
phase "tools"
[[ $(id -u) == 0 ]] || die "run as root (dockerd and debootstrap need it)"
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v jq >/dev/null || need+=(jq)
command -v curl >/dev/null || need+=(curl)
command -v objcopy >/dev/null || need+=(binutils)
command -v "$NATS_SERVER" >/dev/null || need+=(nats-server)
if ((${#need[@]})); then
  log "installing ${need[*]} (apt)"
  { timeout 600 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq \
      -o DPkg::Lock::Timeout=300 --no-install-recommends "${need[@]}"; } >"$VX_WORK/apt.log" 2>&1 \
    || { tail -5 "$VX_WORK/apt.log"; die "apt-get install ${need[*]} failed"; }
  NATS_VERSION="$("$NATS_SERVER" --version 2>/dev/null | sed 's/^nats-server: v//')" || NATS_VERSION=""
fi
cargo_tool() {   # cargo_tool CRATE VERSION: installed at that version, or installed now
  cargo install --list | grep -qx "$1 v$2:" && return 0
  log "installing $1 $2 (crates.io)"
  timeout 1800 nice -n 10 cargo install --locked --quiet "$1" --version "$2" >"$VX_WORK/install-$1.log" 2>&1 \
    || { tail -5 "$VX_WORK/install-$1.log"; die "cargo install $1 failed"; }
}
cargo_tool cargo-auditable "$AUDITABLE_VERSION"
cargo_tool cargo-cyclonedx "$CYCLONEDX_VERSION"
timeout 900 bash scripts/chart/chart-tools.sh >"$VX_WORK/chart-tools.log" 2>&1 || { tail -5 "$VX_WORK/chart-tools.log"; die "chart tools"; }
HELM=$VX_ROOT/.cache/chart-tools/helm
PY=$VX_ROOT/.cache/chart-tools/venv/bin/python
timeout 1800 nice -n 10 cargo build --locked --quiet --bin vx-load 2>"$VX_WORK/vx-load-build.log" \
  || { tail -5 "$VX_WORK/vx-load-build.log"; die "cargo build --bin vx-load failed"; }
LOAD=$VX_ROOT/target/debug/vx-load

# A client that builds with BuildKit (the Dockerfile's cache mounts need it): one with the buildx
# plugin, or a client older than 23 (Debian's docker.io 20.10), which carries BuildKit's client
# itself and uses it with DOCKER_BUILDKIT=1. A newer client without buildx falls back to the
# legacy builder, which cannot parse `RUN --mount`.
DOCKER=""
for c in "$(command -v docker || true)" /usr/bin/docker; do
  [[ -x "$c" ]] || continue
  if "$c" buildx version >/dev/null 2>&1; then DOCKER=$c; break; fi
  major=$("$c" --version | sed -n 's/^Docker version \([0-9]*\)\..*/\1/p')
  if [[ -n "$major" ]] && ((major < 23)); then DOCKER=$c; break; fi
done
[[ -n "$DOCKER" ]] || die "no docker client that builds with BuildKit (install docker-buildx, or Debian's docker.io for /usr/bin/docker)"
export DOCKER_BUILDKIT=1
ok "tools: $(dk --version | cut -d, -f1) client ($DOCKER), $(cargo --version | cut -d' ' -f1-2), nats-server ${NATS_VERSION:-?}"

# ---------------------------------------------------------------- 2. docker daemon
phase "docker daemon"
daemon_up() { timeout 10 "$DOCKER" info >/dev/null 2>&1; }
if daemon_up; then
  ok "using the running docker daemon"
else
  # nice: the build and the container inherit it; the machine is shared.
  nice -n 10 dockerd --iptables=false --bridge=none --storage-driver=vfs >"$CACHE/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 1 120); do
    daemon_up && break
    kill -0 "$DOCKERD_PID" 2>/dev/null || { tail -5 "$CACHE/dockerd.log"; die "dockerd exited"; }
    sleep 0.5
  done
  daemon_up || { tail -5 "$CACHE/dockerd.log"; die "dockerd did not answer within 60 s"; }
  ok "started dockerd (pid $DOCKERD_PID, log $CACHE/dockerd.log)"
fi
fig "daemon: $(dk info --format '{{.ServerVersion}}, storage {{.Driver}}')"

# ---------------------------------------------------------------- 3. base images
phase "base images"
HOST_RUSTC=$(rustc --version | cut -d' ' -f2)
[[ $HOST_RUSTC == "$RUST_ARG" || $HOST_RUSTC == "$RUST_ARG".* ]] \
  || die "this machine's rustc is $HOST_RUSTC, the Dockerfile's RUST_VERSION is $RUST_ARG: the local build base would not be the same toolchain"
BUILD_BASE=vx-bridge-local/build:$SUITE-rust$HOST_RUSTC-auditable$AUDITABLE_VERSION-r$BUILD_RECIPE
RUNTIME_BASE=vx-bridge-local/runtime:$SUITE-cc-nonroot-r$RUNTIME_RECIPE
tarball() { printf '%s/%s.tar' "$CACHE" "$(tr '/:' '__' <<<"$1")"; }
have_image() { dk image inspect "$1" >/dev/null 2>&1; }

# make_bases: debootstrap once; the runtime root from the same .debs, the build root with the
# toolchain. Writes both tarballs.
make_bases() {
  local root=$CACHE/rootfs-build rt=$CACHE/rootfs-runtime pkg deb sysroot d
  rm -rf "$root" "$rt"
  log "debootstrap $SUITE (minbase + gcc, libc6-dev, ca-certificates) from $MIRROR"
  timeout 1200 nice -n 10 debootstrap --variant=minbase \
    --include=gcc,libc6-dev,ca-certificates,netbase,libssl3,libstdc++6,libgomp1,tzdata \
    "$SUITE" "$root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -5 "$CACHE/debootstrap.log"; die "debootstrap failed (log: $CACHE/debootstrap.log)"; }

  # Runtime: the files of the packages distroless/cc-debian12 is made of, from the same .debs.
  mkdir -p "$rt"
  for pkg in base-files netbase tzdata libc6 libgcc-s1 libstdc++6 libgomp1 libssl3 ca-certificates; do
    deb=("$root"/var/cache/apt/archives/"${pkg}"_*.deb)
    [[ ${#deb[@]} == 1 && -f ${deb[0]} ]] || die "no single $pkg .deb in the debootstrap cache"
    dpkg-deb -x "${deb[0]}" "$rt"
  done
  mkdir -p "$rt/etc/ssl/certs"
  # update-ca-certificates' bundle (all of Mozilla's roots), without running its shell script.
  find "$rt/usr/share/ca-certificates/mozilla" -name '*.crt' -print0 | sort -z | xargs -0 cat \
    >"$rt/etc/ssl/certs/ca-certificates.crt"
  # Not in distroless either: the bundle's sources and script, docs, base-files' motd script.
  rm -rf "$rt/usr/sbin/update-ca-certificates" "$rt/usr/share/ca-certificates" "$rt/etc/ca-certificates" \
    "$rt/usr/share/doc" "$rt/usr/share/man" "$rt/usr/share/lintian" "$rt/usr/share/info" "$rt/etc/update-motd.d"
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$rt/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >"$rt/etc/group"
  printf '%s\n' 'passwd: files' 'group: files' 'hosts: files dns' >"$rt/etc/nsswitch.conf"
  mkdir -p "$rt/home/nonroot" "$rt/tmp" "$rt/root"
  chown -R 0:0 "$rt"
  chown 65532:65532 "$rt/home/nonroot"
  chmod 0700 "$rt/home/nonroot" "$rt/root"
  chmod 1777 "$rt/tmp"
  tar --numeric-owner -C "$rt" -cf "$(tarball "$RUNTIME_BASE").tmp" .
  mv "$(tarball "$RUNTIME_BASE").tmp" "$(tarball "$RUNTIME_BASE")"

  # Build: the Debian root, less apt's caches and the docs, plus the toolchain as the official
  # image lays it out (cargo's home /usr/local/cargo; the toolchain itself in /usr/local/rust).
  # It trusts this machine's local CAs too (/usr/local/share/ca-certificates, installed the
  # Debian way): where the network reaches crates.io only through a TLS-inspecting egress, as
  # here, cargo in the build stage needs them. The runtime base does not get them.
  if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >>"$CACHE/debootstrap.log" 2>&1 || die "update-ca-certificates in the build root failed"
  fi
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc \
    "$root"/usr/share/man "$root"/usr/share/locale
  sysroot=$(rustc --print sysroot)
  mkdir -p "$root/usr/local/rust" "$root/usr/local/cargo/bin"
  for d in bin lib libexec etc; do
    [[ -d "$sysroot/$d" ]] && cp -a "$sysroot/$d" "$root/usr/local/rust/"
  done
  cp "$(command -v cargo-auditable)" "$root/usr/local/cargo/bin/"
  tar --numeric-owner -C "$root" -cf "$(tarball "$BUILD_BASE").tmp" .
  mv "$(tarball "$BUILD_BASE").tmp" "$(tarball "$BUILD_BASE")"
  rm -rf "$root" "$rt"
  # Tarballs of earlier recipes or toolchains are not used again.
  find "$CACHE" -maxdepth 1 -name 'vx-bridge-local_*.tar' ! -name "$(basename "$(tarball "$BUILD_BASE")")" \
    ! -name "$(basename "$(tarball "$RUNTIME_BASE")")" -delete
}
import_base() {   # import_base TAG: from its tarball, with the image config the published base has
  if [[ $1 == "$BUILD_BASE" ]]; then
    dk import \
      --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV CARGO_HOME=/usr/local/cargo' \
      "$(tarball "$1")" "$1" >/dev/null
  else
    dk import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
      --change 'USER 65532:65532' --change 'WORKDIR /home/nonroot' \
      "$(tarball "$1")" "$1" >/dev/null
  fi
}
# Each base: kept in docker when there (an image imported anew is a new image, so the build's
# cache would miss), else imported from its tarball, else made (one debootstrap makes both).
t0=$SECONDS
bases=""
for b in "$BUILD_BASE" "$RUNTIME_BASE"; do
  if ! have_image "$b" && [[ ! -f $(tarball "$b") ]]; then
    make_bases
    bases="made (debootstrap) and imported"
    break
  fi
done
for b in "$BUILD_BASE" "$RUNTIME_BASE"; do
  have_image "$b" && continue
  import_base "$b"
  bases=${bases:-imported from $CACHE}
done
bases=${bases:-cached in docker}
# Local bases of earlier recipes or toolchains are not used again (vfs keeps full copies).
while IFS= read -r b; do
  [[ $b == "$BUILD_BASE" || $b == "$RUNTIME_BASE" ]] || dk rmi "$b" >/dev/null 2>&1 || true
done < <(dk image ls --format '{{.Repository}}:{{.Tag}}' | grep '^vx-bridge-local/' || true)
BASES_S=$((SECONDS - t0))
ok "bases $bases in ${BASES_S}s: $BUILD_BASE, $RUNTIME_BASE"

# ---------------------------------------------------------------- 4. build
phase "docker build"
t0=$SECONDS
BUILD_CMD=("$DOCKER" build --network host --progress plain
  --build-arg "BUILD_IMAGE=$BUILD_BASE" --build-arg "RUNTIME_IMAGE=$RUNTIME_BASE" -t "$IMAGE" .)
log "DOCKER_BUILDKIT=1 ${BUILD_CMD[*]}"
timeout "$BUILD_TIMEOUT" "${BUILD_CMD[@]}" >"$OUT/build.log" 2>&1 \
  || { tail -30 "$OUT/build.log"; die "docker build failed or took over ${BUILD_TIMEOUT}s (log: $OUT/build.log)"; }
BUILD_S=$((SECONDS - t0))
cached=$(grep -c ' CACHED$' "$OUT/build.log" || true)
ok "built $IMAGE in ${BUILD_S}s ($cached steps cached; log $OUT/build.log)"
dk save -o "$OUT/$REPO-$TAG.tar" "$IMAGE"
ok "saved: $OUT/$REPO-$TAG.tar (docker load -i / kind load image-archive)"

IMAGE_BYTES=$(dk image inspect -f '{{.Size}}' "$IMAGE")
IMAGE_USER=$(dk image inspect -f '{{.Config.User}}' "$IMAGE")
IMAGE_PORTS=$(dk image inspect -f '{{json .Config.ExposedPorts}}' "$IMAGE")
IMAGE_MIB=$(awk -v b="$IMAGE_BYTES" 'BEGIN {printf "%.1f", b / 1048576}')

# The binary and the exported filesystem.
cid=$(dk create "$IMAGE")
CONTAINERS+=("$cid")
dk cp "$cid:/usr/local/bin/vx-bridge" "$OUT/vx-bridge"
dk export "$cid" | tar -tv >"$VX_WORK/rootfs.txt"
dk rm "$cid" >/dev/null
BIN_BYTES=$(stat -c %s "$OUT/vx-bridge")
BIN_SHA=$(sha256sum "$OUT/vx-bridge" | cut -d' ' -f1)
BIN_MIB=$(awk -v b="$BIN_BYTES" 'BEGIN {printf "%.1f", b / 1048576}')

# ---------------------------------------------------------------- 5. supply chain
phase "supply chain: cargo auditable, SBOM"
# (An output file is named: without one, objcopy rewrites its input, the artifact, in place.)
objcopy --dump-section ".dep-v0=$VX_WORK/dep-v0.zlib" "$OUT/vx-bridge" "$VX_WORK/objcopy.out" 2>"$VX_WORK/objcopy.log" \
  || die "the image's binary has no .dep-v0 section: not built with cargo auditable ($(head -1 "$VX_WORK/objcopy.log"))"
rm -f "$VX_ROOT/vx-bridge_bin.cdx.json"
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s) \
  timeout 300 cargo cyclonedx --manifest-path Cargo.toml --format json --spec-version 1.5 --describe binaries \
  --no-build-deps --quiet >"$VX_WORK/cyclonedx.log" 2>&1 \
  || { tail -5 "$VX_WORK/cyclonedx.log"; die "cargo cyclonedx failed"; }
mv "$VX_ROOT/vx-bridge_bin.cdx.json" "$OUT/vx-bridge.cdx.json"
rm -f "$VX_ROOT/tools/vx-load/vx-load_bin.cdx.json" "$VX_ROOT/crates/testkit/vx-testkit_bin.cdx.json"
SC=$(python3 - "$VX_WORK/dep-v0.zlib" "$OUT/vx-bridge.cdx.json" <<'EOF'
import json, sys, zlib
dep = json.loads(zlib.decompress(open(sys.argv[1], "rb").read()))
bom = json.load(open(sys.argv[2]))
pkgs = dep["packages"]
root = [p for p in pkgs if p.get("root")]
runtime = [p for p in pkgs if not p.get("root") and p.get("kind", "runtime") == "runtime"]
in_bom = {(c["name"], c["version"]) for c in bom.get("components", [])}
missing = sorted(f'{p["name"]}@{p["version"]}' for p in runtime if (p["name"], p["version"]) not in in_bom)
meta = bom["metadata"]["component"]
print(json.dumps({
    "dep_packages": len(pkgs), "dep_runtime": len(runtime),
    "dep_root": f'{root[0]["name"]}@{root[0]["version"]}' if len(root) == 1 else None,
    "bom_format": f'{bom["bomFormat"]} {bom["specVersion"]}', "bom_root": f'{meta["name"]}@{meta.get("version")}',
    "bom_components": len(bom.get("components", [])), "missing_in_bom": missing[:10], "missing_count": len(missing),
}))
EOF
)
DEP_RUNTIME=$(jq -r .dep_runtime <<<"$SC")
BOM_COMPONENTS=$(jq -r .bom_components <<<"$SC")
[[ $(jq -r .dep_root <<<"$SC") == "vx-bridge@$CRATE_VERSION" ]] \
  || die "the binary's .dep-v0 root is $(jq -r .dep_root <<<"$SC"), not vx-bridge@$CRATE_VERSION"
((DEP_RUNTIME >= 50)) || die ".dep-v0 lists only $DEP_RUNTIME runtime crates"
ok "binary is auditable: .dep-v0 names $(jq -r .dep_packages <<<"$SC") crates ($DEP_RUNTIME compiled in, root vx-bridge@$CRATE_VERSION)"
[[ $(jq -r .bom_root <<<"$SC") == "vx-bridge@$CRATE_VERSION" ]] || die "SBOM describes $(jq -r .bom_root <<<"$SC")"
[[ $(jq -r .missing_count <<<"$SC") == 0 ]] \
  || die "$(jq -r .missing_count <<<"$SC") crates of the binary are not in the SBOM: $(jq -r '.missing_in_bom | join(", ")' <<<"$SC")"
ok "SBOM $OUT/vx-bridge.cdx.json ($(jq -r .bom_format <<<"$SC"), cargo-cyclonedx $CYCLONEDX_VERSION): $BOM_COMPONENTS components; all $DEP_RUNTIME crates of the binary are in it"

# ---------------------------------------------------------------- 6. the chart's pod
phase "the chart's Deployment"
# The README's install commands: the two Secrets it creates, then helm with its flags (one NATS
# server here: replicas=1, as the README says for trying it out).
KEK_LINE=$(head -1 "$VXB_KEYS__KEK_FILE")
jq -n --arg w "$SECRET" --arg k "$KEK_LINE" \
  '{"vx-webhook/hmac-secrets": ($w + "\n"), "vx-bridge-kek/kek": ($k + "\n")}' >"$VX_WORK/secrets.json"
chmod 600 "$VX_WORK/secrets.json"
HELM_FLAGS=(--set secrets.webhook.existingSecret=vx-webhook --set secrets.kek.existingSecret=vx-bridge-kek
  --set "image.repository=$REPO" --set "image.tag=$TAG" --set config.nats.stream.replicas=1)
timeout 120 "$HELM" template vx-bridge ./helm/vx-bridge "${HELM_FLAGS[@]}" >"$VX_WORK/chart.yaml" 2>"$VX_WORK/helm.log" \
  || { cat "$VX_WORK/helm.log"; die "helm template failed"; }
mkdir -p "$VX_WORK/mnt"
POD=$("$PY" scripts/chart/image-chart.py "$VX_WORK/chart.yaml" "$VX_WORK/mnt" "$VX_WORK/secrets.json") \
  || die "cannot read the chart's Deployment"
jqp() { jq -r "$1" <<<"$POD"; }
[[ $(jqp .image) == "$IMAGE" ]] || die "the chart runs image $(jqp .image), not $IMAGE"
UID_=$(jqp '.security.runAsUser // .pod_security.runAsUser')
GID_=$(jqp '.security.runAsGroup // .pod_security.runAsGroup')
FSGROUP=$(jqp '.pod_security.fsGroup // empty')
[[ $UID_:$GID_ == 65532:65532 ]] || die "the chart runs as $UID_:$GID_, not 65532:65532"
[[ $IMAGE_USER == "$UID_:$GID_" ]] || die "the image's USER is $IMAGE_USER, the chart's $UID_:$GID_"
[[ $(jqp '.security.runAsNonRoot // .pod_security.runAsNonRoot') == true ]] || die "chart: runAsNonRoot is not true"
[[ $(jqp .security.readOnlyRootFilesystem) == true ]] || die "chart: readOnlyRootFilesystem is not true"
[[ $(jqp .security.allowPrivilegeEscalation) == false ]] || die "chart: allowPrivilegeEscalation is not false"
[[ $(jqp '.security.capabilities.drop | join(",")') == ALL ]] || die "chart: capabilities.drop is not [ALL]"
[[ -z $(jqp '.security.capabilities.add // [] | join(",")') ]] || die "chart: adds capabilities"
HTTP_PORT=$(jqp .ports.http)
[[ $(jqp .config.http.listen) == "0.0.0.0:$HTTP_PORT" ]] || die "chart: http.listen $(jqp .config.http.listen) is not the containerPort $HTTP_PORT"
[[ $(jq -r --arg p "$HTTP_PORT/tcp" 'has($p)' <<<"$IMAGE_PORTS") == true ]] \
  || die "the image exposes $IMAGE_PORTS, the chart's containerPort is $HTTP_PORT"
for p in startupProbe livenessProbe readinessProbe; do
  [[ $(jqp ".probes.$p.port") == "$HTTP_PORT" ]] || die "chart: $p is not on the http port"
done
GRACE=$(jqp .grace_seconds)
MEM=$(jqp .memory_limit | sed 's/Mi$/m/; s/Gi$/g/')
WEBHOOK_PATH=$(jqp .config.http.webhook_path)
STREAM=$(jqp .config.nats.stream.name)
SHUTDOWN_TIMEOUT=$(jqp .config.http.shutdown_timeout)
ok "chart: Deployment $(jqp .deployment): image $IMAGE, args [$(jqp '.args | join(" ")')], user $UID_:$GID_ (runAsNonRoot), read-only root, drop ALL, no privilege escalation, port $HTTP_PORT (= image EXPOSE), probes $(jqp '[.probes[] | .path] | join(" ")'), grace ${GRACE}s, memory ${MEM:-none}"

# container_args NAME READONLY(1|0) PORT: RUN_ARGS, the `docker run` arguments of the chart's
# pod (image and args included); run_container NAME READONLY PORT starts it, detached.
free_port NP
free_port BP
nats_start n1 "$NP"
container_args() {
  local m
  RUN_ARGS=(--detach --name "$1" --network host --user "$UID_:$GID_" --cap-drop ALL
    --security-opt no-new-privileges)
  (($2)) && RUN_ARGS+=(--read-only)
  [[ -n "$FSGROUP" ]] && RUN_ARGS+=(--group-add "$FSGROUP")
  [[ -n "$MEM" ]] && RUN_ARGS+=(--memory "$MEM")
  RUN_ARGS+=(-e "VXB_NATS__URL=nats://127.0.0.1:$NP" -e "VXB_HTTP__LISTEN=127.0.0.1:$3")
  while IFS= read -r m; do RUN_ARGS+=(-e "$m"); done < <(jqp '.env[] | "\(.name)=\(.value)"')
  while IFS= read -r m; do RUN_ARGS+=(-v "$m"); done < <(jqp '.mounts[] | "\(.host):\(.container):ro"')
  RUN_ARGS+=("$IMAGE")
  while IFS= read -r m; do RUN_ARGS+=("$m"); done < <(jqp '.args[]')
}
run_container() {
  container_args "$@"
  CONTAINERS+=("$1")
  dk run "${RUN_ARGS[@]}" >/dev/null
}
# The secret files as the kubelet projects them: owned by root, group fsGroup, mode 0440.
chown -R "0:${FSGROUP:-0}" "$VX_WORK/mnt"
container_args vxb-image-check-$$ 1 "$BP"
fig "docker run ${RUN_ARGS[*]}"

# process_diff CONTAINER: sets DIFF to `docker diff` less the mount points the runtime itself
# creates (each mount's target and its parent directories, as the kubelet's runtime does too):
# what is left was written by the process. MOUNT_DIFF: how many lines were left out.
process_diff() {
  local all skip=() m
  all=$(dk diff "$1")
  while IFS= read -r m; do
    while [[ -n "$m" && "$m" != / && "$m" != . ]]; do skip+=("$m"); m=$(dirname "$m"); done
  done < <(jqp '.mounts[].container')
  DIFF=$(awk 'NR == FNR {skip[$0] = 1; next} NF && !(($1 == "A" || $1 == "C") && ($2 in skip))' \
    <(printf '%s\n' "${skip[@]}") <(printf '%s\n' "$all"))
  MOUNT_DIFF=$(($(awk 'NF' <<<"$all" | wc -l) - $(awk 'NF' <<<"$DIFF" | wc -l)))
}

# ---------------------------------------------------------------- 7. checks
phase "run: probes, process, one webhook"
C=vxb-image-check-$$
t0=$(now_ms)
run_container "$C" 1 "$BP"
wait_http "http://127.0.0.1:$BP$(jqp .probes.readinessProbe.path)" 60 \
  || { dk logs "$C" 2>&1 | tail -20; die "readiness probe $(jqp .probes.readinessProbe.path) not 200 within 60 s"; }
READY_MS=$(($(now_ms) - t0))
for p in startupProbe livenessProbe readinessProbe; do
  path=$(jqp ".probes.$p.path")
  code=$(curl -s -o "$VX_WORK/probe.json" -w '%{http_code}' --max-time 5 "http://127.0.0.1:$BP$path")
  [[ $code == 200 ]] || die "$p $path answered $code"
  ok "$p GET $path: 200"
done
jq -e '.nats_connected == true and .stream_ready == true and .sessions_ready == true' "$VX_WORK/probe.json" >/dev/null \
  || die "/readyz body: $(cat "$VX_WORK/probe.json")"
ok "/readyz $(jq -c . "$VX_WORK/probe.json") ${READY_MS} ms after docker run (nats-server ${NATS_VERSION:-?} on :$NP)"

PID=$(dk inspect -f '{{.State.Pid}}' "$C")
st() { awk -v k="$1:" '$1 == k {$1 = ""; sub(/^ /, ""); print}' "/proc/$PID/status"; }
[[ $(st Uid) == "65532 65532 65532 65532" ]] || die "process Uid (real, effective, saved, fs): $(st Uid)"
[[ $(st Gid) == "65532 65532 65532 65532" ]] || die "process Gid (real, effective, saved, fs): $(st Gid)"
[[ $(st CapEff) == 0000000000000000 && $(st CapPrm) == 0000000000000000 && $(st CapBnd) == 0000000000000000 ]] \
  || die "capabilities: eff $(st CapEff) prm $(st CapPrm) bnd $(st CapBnd)"
[[ $(st NoNewPrivs) == 1 ]] || die "NoNewPrivs $(st NoNewPrivs)"
[[ $(st NSpid | awk '{print $NF}') == 1 ]] || die "not PID 1 in its namespace: NSpid $(st NSpid)"
procs=$(dk top "$C" -eo uid,pid,comm | tail -n +2)
[[ $(wc -l <<<"$procs") == 1 && $(awk '{print $1}' <<<"$procs") == 65532 ]] || die "docker top: $procs"
rootopts=$(awk '$5 == "/" {print $6}' "/proc/$PID/mountinfo")
[[ ,$rootopts, == *,ro,* ]] || die "root filesystem mounted $rootopts"
ok "process: PID 1 (host pid $PID), uid/gid 65532 (docker top: $(tr -s ' ' <<<"$procs")), CapEff/CapBnd 0, NoNewPrivs 1, root mounted $rootopts"

timeout 60 "$LOAD" webhook --url "http://127.0.0.1:$BP$WEBHOOK_PATH" --secret "$SECRET" --connections 1 --requests 1 \
  --id-prefix image-one --record "$VX_WORK/one.csv" --json >"$VX_WORK/one.json"
V=$(timeout 60 "$LOAD" verify --nats "nats://127.0.0.1:$NP" --stream "$STREAM" --record "$VX_WORK/one.csv" --all-accepted) \
  || { echo "$V"; die "verify failed"; }
jq -e '.ok and .accepted_deliveries == 1 and .missing_after_202 == 0 and .stream_messages >= 1' <<<"$V" >/dev/null \
  || { echo "$V"; die "the signed webhook was not answered 202 and stored"; }
ok "signed webhook: $(cut -d, -f2 "$VX_WORK/one.csv") seq $(cut -d, -f3 "$VX_WORK/one.csv"), in stream $STREAM under its event id"

phase "docker stop -t $GRACE under load"
"$LOAD" webhook --url "http://127.0.0.1:$BP$WEBHOOK_PATH" --secret "$SECRET" --connections 64 --duration 6s \
  --id-prefix image-drain --record "$VX_WORK/drain.csv" --json >"$VX_WORK/drain.json" &
LOADER=$!
VX_PIDS+=("$LOADER")
for _ in $(seq 1 40); do   # until the load is in full swing (at least 300 answers), ≤ 4 s
  [[ -f "$VX_WORK/drain.csv" ]] && (($(wc -l <"$VX_WORK/drain.csv") >= 300)) && break
  sleep 0.1
done
before=$(wc -l <"$VX_WORK/drain.csv")
t0=$(now_ms)
timeout $((GRACE + 30)) "$DOCKER" stop -t "$GRACE" "$C" >/dev/null || die "docker stop did not return"
STOP_MS=$(($(now_ms) - t0))
EXIT=$(dk inspect -f '{{.State.ExitCode}}' "$C")
OOM=$(dk inspect -f '{{.State.OOMKilled}}' "$C")
timeout 60 tail --pid="$LOADER" -f /dev/null || die "the load did not end"
wait "$LOADER" || die "vx-load failed"
dk logs "$C" >"$VX_WORK/container.log" 2>&1
V=$(timeout 60 "$LOAD" verify --nats "nats://127.0.0.1:$NP" --stream "$STREAM" --record "$VX_WORK/drain.csv") \
  || { echo "$V"; die "verify failed"; }
# Delivered: the deliveries that reached the bridge (an HTTP answer, or a connection it closed
# mid-request); the rest were refused at connect once its listener had closed.
SENT=$(jq -r .deliveries <<<"$V")
REFUSED=$(jq -r '.codes.connect_error // 0' <<<"$V")
DELIVERED=$((SENT - REFUSED))
ACCEPTED=$(jq -r .accepted_deliveries <<<"$V")
MISSING=$(jq -r .missing_after_202 <<<"$V")
STORED=$((ACCEPTED - MISSING))
HUNG=$(jq -r '.codes.timeout // 0' <<<"$V")
# Deliveries sent before SIGTERM reached the process and answered 202 after it: drained in flight.
SIG_MS=$(jq -rR 'fromjson? | select(.message == "SIGTERM received") | .timestamp' "$VX_WORK/container.log" | head -1 \
  | python3 -c 'import sys, datetime; t = sys.stdin.read().strip(); print(int(datetime.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() * 1000) if t else "")')
[[ -n "$SIG_MS" ]] || { tail -20 "$VX_WORK/container.log"; die "the log has no \"SIGTERM received\""; }
INFLIGHT=$(awk -F, -v s="$SIG_MS" '$6 < s && $7 >= s && $2 == 202' "$VX_WORK/drain.csv" | wc -l)
fig "load: $SENT deliveries sent, $DELIVERED reached the bridge ($before answered before docker stop), $REFUSED refused at connect after it closed its listener; codes $(jq -c .codes <<<"$V"); unanswered but stored $(jq -r .unanswered_but_stored <<<"$V") (a sender's retry is deduplicated)"
[[ $EXIT == 0 && $OOM == false ]] || { tail -20 "$VX_WORK/container.log"; die "exit code $EXIT (OOMKilled $OOM) after docker stop"; }
((STOP_MS < GRACE * 1000)) || die "docker stop took ${STOP_MS} ms: not within the ${GRACE}s grace period (SIGKILL?)"
ok "docker stop -t $GRACE: exit code $EXIT in ${STOP_MS} ms (< ${GRACE}s; http.shutdown_timeout $SHUTDOWN_TIMEOUT)"
jq -e '.ok and .missing_after_202 == 0 and .non_retryable_answers == 0' <<<"$V" >/dev/null \
  || verify_failed "$V"
((ACCEPTED > 0)) || die "no delivery was accepted"
ok "every 202 stored: $DELIVERED delivered, $ACCEPTED answered 202, $STORED stored under their event ids; other answers retryable"
((HUNG == 0)) || die "$HUNG requests got no answer within vx-load's 30 s (hung)"
ok "no request hung (0 timeouts); $INFLIGHT deliveries were in flight at SIGTERM and answered 202"
((INFLIGHT > 0)) || die "no delivery was in flight at SIGTERM: the drain was not exercised"
for m in "SIGTERM received" "shutting down: finishing in-flight requests" "NATS connection drained" "vx-bridge stopped"; do
  grep -q "\"message\":\"$m\"" "$VX_WORK/container.log" || { tail -20 "$VX_WORK/container.log"; die "the log lacks \"$m\""; }
done
if grep -E 'did not finish in time|draining NATS (failed|timed out)|did not stop in time|Read-only file system' "$VX_WORK/container.log"; then
  die "the log shows an unclean stop"
fi
ok "log: SIGTERM received → finishing in-flight requests → NATS connection drained → vx-bridge stopped"
process_diff "$C"
[[ -z "$DIFF" ]] || die "docker diff (read-only root): $DIFF"
ok "docker diff: nothing but the $MOUNT_DIFF mount points the runtime made (read-only root)"

phase "writable root, no shell"
# Same pod with a writable root: what the process would write if it could.
C2=vxb-image-check-rw-$$
free_port BP2
run_container "$C2" 0 "$BP2"
wait_http "http://127.0.0.1:$BP2$(jqp .probes.readinessProbe.path)" 60 || die "writable-root container not ready"
timeout 120 "$LOAD" webhook --url "http://127.0.0.1:$BP2$WEBHOOK_PATH" --secret "$SECRET" --connections 4 --requests 50 \
  --id-prefix image-rw --record "$VX_WORK/rw.csv" --json >/dev/null
(($(awk -F, '$2 == 202' "$VX_WORK/rw.csv" | wc -l) == 50)) || die "writable-root run: not every webhook answered 202"
timeout $((GRACE + 30)) "$DOCKER" stop -t "$GRACE" "$C2" >/dev/null
process_diff "$C2"
[[ -z "$DIFF" ]] || die "docker diff (writable root): $DIFF"
ok "docker diff: nothing but the mount points with a writable root too (50 webhooks, readiness, stop): the process writes nothing"

set +e
dk run --rm --network none --entrypoint /bin/sh "$IMAGE" -c true >"$VX_WORK/sh.log" 2>&1
SH_CODE=$?
set -e
((SH_CODE != 0)) || die "docker run --entrypoint /bin/sh succeeded: the image has a shell"
ok "docker run --entrypoint /bin/sh: exit $SH_CODE ($(grep -o 'no such file or directory' "$VX_WORK/sh.log" | head -1))"
names=$(awk '{print $6}' "$VX_WORK/rootfs.txt")
shells=$(grep -E '(^|/)(sh|bash|dash|ash|zsh|ksh|mksh|busybox)$' <<<"$names" || true)
[[ -z "$shells" ]] || die "shells in the image: $shells"
pms=$(grep -E '(^|/)(dpkg|apt|apt-get|apk|rpm|microdnf)$' <<<"$names" || true)
[[ -z "$pms" ]] || die "package managers in the image: $pms"
# Executables outside the library directories: only the bridge. (Left out: the files docker
# itself puts into every container: .dockerenv, dev/console, etc/hostname, hosts, resolv.conf.)
exes=$(awk '$1 ~ /^-..x/ {print $6}' "$VX_WORK/rootfs.txt" \
  | grep -vxE '\.dockerenv|dev/console|etc/(hostname|hosts|resolv\.conf)' \
  | grep -vE '^(lib|usr/lib|lib64)/|\.so(\.[0-9.]+)?$' || true)
[[ $exes == usr/local/bin/vx-bridge ]] || die "executables in the image besides the bridge: $exes"
ok "exported filesystem: $(wc -l <<<"$names") entries, no shell, no package manager, one executable: /$exes"
[[ $(sha256sum "$OUT/vx-bridge" | cut -d' ' -f1) == "$BIN_SHA" ]] || die "$OUT/vx-bridge changed after it was copied out of the image"
fig "image $IMAGE: ${IMAGE_MIB} MiB; binary /usr/local/bin/vx-bridge: ${BIN_MIB} MiB ($BIN_BYTES bytes, sha256 $BIN_SHA, as $OUT/vx-bridge)"

TOTAL=$((SECONDS - START))
echo
echo "image-check: ok: image ${IMAGE_MIB} MiB, binary ${BIN_MIB} MiB, ready ${READY_MS} ms; drain: $DELIVERED delivered, $ACCEPTED 202, $STORED stored ($INFLIGHT in flight at SIGTERM), exit $EXIT in $(awk -v m="$STOP_MS" 'BEGIN {printf "%.1f", m / 1000}') s of ${GRACE}s; SBOM $BOM_COMPONENTS components ⊇ $DEP_RUNTIME crates in .dep-v0; bases $bases (${BASES_S}s), build ${BUILD_S}s; total ${TOTAL}s"
