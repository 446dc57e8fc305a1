# Build stage: compile listd against the committed query metadata (.sqlx/), so no
# database is needed at build time.
FROM rust:1.95-bookworm AS build
WORKDIR /src
ENV SQLX_OFFLINE=true
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY .sqlx .sqlx
COPY migrations migrations
COPY templates templates
COPY src src
RUN cargo build --release --locked && strip target/release/listd

# Run stage: the binary, CA certificates for the relay's TLS, and PostgreSQL's server
# binaries so the self-managed database works when no LISTD_DATABASE_URL is given.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates postgresql \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --home-dir /var/lib/listd --uid 10001 listd
COPY --from=build /src/target/release/listd /usr/local/bin/listd
ENV LISTD_DATA_DIR=/var/lib/listd \
    LISTD_HTTP_ADDR=0.0.0.0:8080 \
    LISTD_SMTP_ADDR=0.0.0.0:2525
VOLUME ["/var/lib/listd"]
EXPOSE 8080 2525
USER listd
WORKDIR /var/lib/listd
HEALTHCHECK --interval=30s --timeout=3s CMD ["listd", "--version"]
ENTRYPOINT ["listd"]
CMD ["serve"]
