# syntax=docker/dockerfile:1.7
# web: the collectors' web app (the binary and the app's static files; no JavaScript build).
# Build from the repository root (the whole workspace is the context):
#   docker build -f k8s/images/web.Dockerfile -t record-platform/web:dev .
# The manifests name the image record-platform/web; overlays set registry and tag (images:).

ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS build
# The same build packages as the other images: the shared service crates come from one lockfile.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang libclang-dev protobuf-compiler pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p web --bin web \
 && install -D -m 0755 target/release/web /out/web \
 && mkdir -p /out/assets && cp -R services/web/assets/. /out/assets/

# glibc + libgcc, no shell, user nonroot (65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/web /usr/local/bin/web
# Hashed and fingerprinted by the service at start-up (WEB_ASSETS_DIR).
COPY --from=build /out/assets /srv/web/assets
ENV WEB_ASSETS_DIR=/srv/web/assets
USER 65532:65532
EXPOSE 4003/tcp
ENTRYPOINT ["/usr/local/bin/web"]
