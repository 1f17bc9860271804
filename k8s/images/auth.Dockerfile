# syntax=docker/dockerfile:1.7
# auth: the auth service.
# Build from the repository root (the whole workspace is the context):
#   docker build -f k8s/images/auth.Dockerfile -t record-platform/auth:dev .
# The manifests name the image record-platform/auth; overlays set registry and tag (images:).

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
    cargo build --release --locked -p auth --bin auth \
 && install -D -m 0755 target/release/auth /out/auth

# glibc + libgcc, no shell, user nonroot (65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/auth /usr/local/bin/auth
USER 65532:65532
EXPOSE 4001/tcp 50051/tcp
ENTRYPOINT ["/usr/local/bin/auth"]
CMD ["serve"]
