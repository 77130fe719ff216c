# mirrorswap container image: build with the official Rust image, ship on distroless (glibc, no
# shell, no package manager) as the non-root user 65532.
#   docker build -t mirrorswap .
# CI runs the same `cargo build` line (.ci/run reads it from here), so the build cannot rot.
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin mirrorswap
RUN install -D -m 0755 target/release/mirrorswap /out/mirrorswap

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/mirrorswap /mirrorswap
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["/mirrorswap"]
CMD ["serve"]
