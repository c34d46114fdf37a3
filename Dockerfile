# One image with both binaries: `causeway` (worker, local mode, CLI) and `causeway-operator`.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin causeway --bin causeway-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/causeway /usr/local/bin/causeway
COPY --from=build /src/target/release/causeway-operator /usr/local/bin/causeway-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/causeway"]
