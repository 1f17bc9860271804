# syntax=docker/dockerfile:1.7
# edge: the edge proxy (Pingora; BoringSSL, quiche).
# Build from the repository root (the whole workspace is the context):
#   docker build -f k8s/images/edge.Dockerfile -t record-platform/edge:dev .
# The manifests name the image record-platform/edge; overlays set registry and tag (images:).

ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS build
# BoringSSL (boring-sys) builds with cmake and clang; bindgen needs libclang; tonic needs protoc.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang libclang-dev protobuf-compiler pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p edge --bin edge \
 && install -D -m 0755 target/release/edge /out/edge

FROM debian:bookworm-slim
# libstdc++ (BoringSSL's C++ parts) is in the base image; ca-certificates for TLS upstreams; no shell tools beyond the base's
# (kubectl exec is still possible for the graceful-upgrade runbook: docs/upgrade.md).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 nonroot \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --shell /usr/sbin/nologin nonroot
COPY --from=build /out/edge /usr/local/bin/edge
USER 65532:65532
EXPOSE 443/tcp 443/udp 80/tcp 9000/tcp
ENTRYPOINT ["/usr/local/bin/edge"]
CMD ["--config", "/etc/edge/config/edge.toml"]
