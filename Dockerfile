# mirrorswap container image for people with Docker. The path tested here (no Docker engine) is
# scripts/release-bundle.sh, which builds the same image with buildah: the same file set (both
# run scripts/image-rootfs.sh), user, entrypoint, command, ports, environment and labels
# (tests/airgap.rs compares the settings below with the image it builds).
#   docker build -t mirrorswap \
#     --build-arg REVISION=$(git rev-parse HEAD) \
#     --build-arg SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) \
#     --build-arg CREATED=$(date -u -d @$(git log -1 --format=%ct) +%Y-%m-%dT%H:%M:%SZ) .
# CI runs the same `cargo build` line (.ci/run reads it from here), so the build cannot rot.
FROM docker.io/library/rust:1.95-bookworm AS build
ARG SOURCE_DATE_EPOCH=0
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin mirrorswap
RUN bash scripts/image-rootfs.sh target/release/mirrorswap /out/rootfs && mv /out/rootfs/home/nonroot /out/home-nonroot

FROM scratch
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
COPY --from=build /out/rootfs/ /
# COPY makes everything 0:0; nonroot's home directory belongs to nonroot, as in the buildah image.
COPY --from=build --chown=65532:65532 --chmod=0700 /out/home-nonroot/ /home/nonroot/
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
LABEL org.opencontainers.image.title="mirrorswap"
LABEL org.opencontainers.image.description="Kubernetes mutating admission webhook that rewrites container image references to mirror registries"
LABEL org.opencontainers.image.source="https://github.com/mirrorswap/mirrorswap"
LABEL org.opencontainers.image.licenses="Apache-2.0"
LABEL org.opencontainers.image.version="$VERSION"
LABEL org.opencontainers.image.revision="$REVISION"
LABEL org.opencontainers.image.created="$CREATED"
USER 65532:65532
WORKDIR /
EXPOSE 8443/tcp 8080/tcp
ENTRYPOINT ["/mirrorswap"]
CMD ["serve"]
