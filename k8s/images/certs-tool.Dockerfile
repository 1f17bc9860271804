# syntax=docker/dockerfile:1.7
# certs-tool: certs-tool (and the cert-rotation CronJob's bash + curl).
# Build from the repository root (the whole workspace is the context):
#   docker build -f k8s/images/certs-tool.Dockerfile -t record-platform/certs-tool:dev .
# The manifests name the image record-platform/certs-tool; overlays set registry and tag (images:).

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
    cargo build --release --locked -p certs-tool --bin certs-tool \
 && install -D -m 0755 target/release/certs-tool /out/certs-tool

FROM debian:bookworm-slim
# libstdc++ (BoringSSL's C++ parts) is in the base image; ca-certificates for TLS upstreams;
# curl for the CronJob that PATCHes the Secret through the API.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 nonroot \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --shell /usr/sbin/nologin nonroot
COPY --from=build /out/certs-tool /usr/local/bin/certs-tool
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/certs-tool"]
CMD ["--help"]
