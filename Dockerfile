# Builds the passerelle binary and runs it on a slim Debian base.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p gateway --bin passerelle

FROM debian:bookworm-slim
# libcrypto (libssl3): SQLCipher's AES and HMAC for the encrypted store.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libssl3 \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --home /var/lib/passerelle passerelle \
    && mkdir -p /var/lib/passerelle /etc/passerelle \
    && chown passerelle /var/lib/passerelle
COPY --from=build /src/target/release/passerelle /usr/local/bin/passerelle
USER passerelle
VOLUME ["/var/lib/passerelle"]
# Production (deploy/passerelle.production.toml): HTTPS and MLLP over TLS.
EXPOSE 8443 2576
ENTRYPOINT ["/usr/local/bin/passerelle"]
CMD ["serve"]
