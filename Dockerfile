# switchboard as a container: a static binary on an empty base, run as a
# non-root user, with a health check that needs no shell or curl.
#
#   docker build -t switchboard .
#   docker run --rm -p 8080:8080 switchboard --addr :8080
#
# deploy/docker-compose.yml runs three of these with Redis and nginx.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/switchboard ./cmd/switchboard

FROM scratch
COPY --from=build /out/switchboard /switchboard
# Root certificates, for rediss:// and a --jwks-url over https.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
USER 65532:65532
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=4s --retries=3 CMD ["/switchboard", "healthcheck"]
ENTRYPOINT ["/switchboard"]
