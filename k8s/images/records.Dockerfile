# syntax=docker/dockerfile:1.7
# records: the records service.
# Build from the repository root (the whole workspace is the context):
#   docker build -f k8s/images/records.Dockerfile -t record-platform/records:dev .
# The manifests name the image record-platform/records; overlays set registry and tag (images:).

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
    cargo build --release --locked -p records --bin records \
 && install -D -m 0755 target/release/records /out/records

# glibc + libgcc, no shell, user nonroot (65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/records /usr/local/bin/records
USER 65532:65532
EXPOSE 4002/tcp 50052/tcp
ENTRYPOINT ["/usr/local/bin/records"]
CMD ["serve"]
