# vx-bridge container image: a release build in the official Rust image, copied into a
# distroless runtime (glibc, CA certificates, no shell, no package manager), run as a
# numeric non-root user. Build (BuildKit: the default builder since Docker 23):
#   docker build -t vx-bridge:0.1.0 .
# The Helm chart runs it with a read-only root filesystem and all capabilities dropped; the
# binary writes nothing to disk. scripts/chart/image-check.sh builds and runs this file for real.
#
# No `# syntax=` line: the builder's built-in Dockerfile frontend is used (the cache mounts
# below need BuildKit ≥ 0.8, i.e. Docker ≥ 20.10 with BuildKit), so the build fetches no
# frontend image from a registry.
#
# The two base images are build arguments, so that a machine without access to the public
# registries can build this same file on equivalent bases it made itself
# (scripts/chart/image-check.sh does: `--build-arg BUILD_IMAGE=… --build-arg RUNTIME_IMAGE=…`). The
# defaults are the published ones.

ARG RUST_VERSION=1.95
# The build stage's Debian must match the runtime's (distroless debian12 = bookworm): same glibc.
ARG DEBIAN=bookworm
ARG BUILD_IMAGE=rust:${RUST_VERSION}-${DEBIAN}
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILD_IMAGE} AS build
# The release binary is built with `cargo auditable`: the dependency tree (crate names,
# versions, sources) is embedded in its `.dep-v0` section, so `cargo audit bin`, Trivy or
# Grype can scan the binary itself (README "Supply chain"). Installed unless the base has it.
ARG CARGO_AUDITABLE_VERSION=0.7.7
RUN command -v cargo-auditable >/dev/null \
 || cargo install --locked cargo-auditable --version "${CARGO_AUDITABLE_VERSION}"
WORKDIR /build
# Sources only (see .dockerignore). The schemas are embedded into the binary at build time.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The other workspace members (cargo reads their manifests; only vx-bridge is built).
COPY tools ./tools
COPY crates ./crates
COPY schemas ./schemas
# The documented example config is the defaults, embedded at build time (src/config/mod.rs).
COPY config/vx-bridge.example.toml ./config/vx-bridge.example.toml
# The seed body the demo embeds (src/demo.rs), and the bench the manifest declares (not built).
COPY tests/fixtures ./tests/fixtures
COPY benches ./benches
# Cache mounts keep the registry and the target dir between builds; the binary is copied out
# of the cached target dir so that the next stage can see it.
# --no-default-features: the service only; `demo` and `mock-vx` (the feature `demo`) stay out.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/build/target \
    cargo auditable build --release --locked -p vx-bridge --no-default-features --bin vx-bridge \
 && install -D -m 0755 target/release/vx-bridge /out/vx-bridge

# distroless/cc: glibc and libgcc for the Rust binary, CA roots for TLS to NATS and the VX API.
# Its :nonroot variant has user 65532 ("nonroot"); we name the UID numerically so that
# Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
FROM ${RUNTIME_IMAGE}
COPY --from=build /out/vx-bridge /usr/local/bin/vx-bridge
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/vx-bridge"]
CMD ["serve"]
