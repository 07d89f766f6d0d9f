# syntax=docker/dockerfile:1
# vx-bridge container image: a release build in the official Rust image, copied into a
# distroless runtime (glibc, CA certificates, no shell, no package manager), run as a
# numeric non-root user. Build: docker build -t vx-bridge:0.1.0 .
# The Helm chart runs it with a read-only root filesystem and all capabilities dropped; the
# binary writes nothing to disk.

ARG RUST_VERSION=1.95
# The build stage's Debian must match the runtime's (distroless debian12 = bookworm): same glibc.
ARG DEBIAN=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN} AS build
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
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/build/target \
    cargo build --release --locked -p vx-bridge --bin vx-bridge \
 && install -D -m 0755 target/release/vx-bridge /out/vx-bridge

# distroless/cc: glibc and libgcc for the Rust binary, CA roots for TLS to NATS and the VX API.
# Its :nonroot variant has user 65532 ("nonroot"); we name the UID numerically so that
# Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/vx-bridge /usr/local/bin/vx-bridge
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/vx-bridge"]
CMD ["serve"]
