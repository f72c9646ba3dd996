#!/usr/bin/env bash
# Install what the example clients in examples/clients/ need, for tests/clients: node and npm, Go
# with Debian's grpc-go and protobuf packages, protoc-gen-go, protoc-gen-go-grpc and protoc (all
# from the system's package manager: no module proxy is needed, the Go build runs offline), then
# the Node example's locked npm packages (npm ci). Idempotent: apt runs only for what is missing.
# Where apt cannot run (not root, not Debian), it says what is missing; the client tests then skip
# saying so (under CI they fail).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
if ! command -v node >/dev/null; then
    need+=(nodejs npm)
elif ! command -v npm >/dev/null; then
    need+=(npm)
fi
command -v go >/dev/null || need+=(golang-go)
command -v protoc-gen-go >/dev/null || need+=(protoc-gen-go)
command -v protoc-gen-go-grpc >/dev/null || need+=(protoc-gen-go-grpc)
command -v protoc >/dev/null || need+=(protobuf-compiler)  # its Java and C# generators
# grpc-go 1.33 with golang/protobuf 1.5 (the APIv2 shim): with 1.3 the codec cannot marshal the
# messages protoc-gen-go writes today. Listed together, apt takes 1.5 for grpc's dependency.
[ -d /usr/share/gocode/src/google.golang.org/grpc ] || need+=(golang-google-grpc-dev golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev)

if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "setup_clients: apt-get install ${need[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    else
        echo "setup_clients: missing ${need[*]}; install them with the system's package manager" >&2
    fi
fi

if command -v npm >/dev/null; then
    (cd examples/clients/node && npm ci --no-audit --no-fund --loglevel=error)
fi
