#!/usr/bin/env bash
# The real Pulumi engine for `openbell infra preview|up|destroy` on a Kubernetes cluster: the pulumi CLI
# (github.com/pulumi/pulumi/pkg/v3) and its Kubernetes provider (pulumi-resource-kubernetes, from
# github.com/pulumi/pulumi-kubernetes/provider/v4), built from the Go module proxy into a versioned cache, as
# scripts/kube-build.sh keeps the control plane. No download site is reached: the engine is run with automatic
# plugin acquisition off and finds the provider on PATH. Idempotent: skips whatever is already built.
# Cold: 15-20 minutes on 2 cores and about 10 GB of Go caches; warm: nothing.
set -euo pipefail

PULUMI_VERSION="${OPENBELL_PULUMI_VERSION:-3.276.0}"
# Only a pseudo-version of the provider module is served; it is the provider of pulumi-kubernetes 4.25
# (the version it reports), built against the SDK release its code compiles with.
K8S_PROVIDER_MODULE="github.com/pulumi/pulumi-kubernetes/provider/v4"
K8S_PROVIDER_REF="${OPENBELL_PULUMI_K8S_PROVIDER_REF:-v4.0.0-20260115033456-f47bc2d6f199}"
K8S_PROVIDER_VERSION="${OPENBELL_PULUMI_K8S_PROVIDER_VERSION:-4.25.0}"
K8S_SDK_VERSION="4.22.2"
CACHE="${OPENBELL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/openbell}"
ROOT="$CACHE/pulumi-v$PULUMI_VERSION"
BIN="$ROOT/bin"
SRC="$ROOT/src"
mkdir -p "$BIN" "$SRC"

log() { printf 'pulumi-build: %s\n' "$*" >&2; }
have() { [ -x "$BIN/$1" ] && [ -s "$BIN/$1" ]; }

build_cli() {
    local dir="$SRC/pulumi"
    rm -rf "$dir" && mkdir -p "$dir"
    log "pulumi v$PULUMI_VERSION from github.com/pulumi/pulumi/pkg/v3 (cold: about 7 min)"
    # pkg/v3's own go.mod replaces sdk/v3 with ../sdk and atotto/clipboard with a fork: a consumer must say
    # the same (the go command ignores a dependency's replace directives), so `go install pkg@v` is refused.
    cat >"$dir/go.mod" <<EOF
module openbell.local/pulumi

go 1.26

replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e
EOF
    cat >"$dir/tools.go" <<'EOF'
//go:build tools

// The command this module builds; the build tag keeps the go command from compiling this file.
package tools

import _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
EOF
    (cd "$dir" && go get "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi@v$PULUMI_VERSION" \
        "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION" && go mod tidy)
    (cd "$dir" && go build -trimpath -o "$BIN/pulumi.tmp" \
        -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION" \
        github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
    mv "$BIN/pulumi.tmp" "$BIN/pulumi"
}

build_kubernetes_provider() {
    local dir="$SRC/pulumi-kubernetes" mod
    log "pulumi-resource-kubernetes $K8S_PROVIDER_VERSION from $K8S_PROVIDER_MODULE@$K8S_PROVIDER_REF (cold: about 10 min)"
    mod="$(go mod download -json "$K8S_PROVIDER_MODULE@$K8S_PROVIDER_REF" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')"
    [ -d "$mod" ] || { log "$K8S_PROVIDER_MODULE@$K8S_PROVIDER_REF: not in the module cache"; exit 3; }
    rm -rf "$dir" && cp -r "$mod" "$dir" && chmod -R u+w "$dir"
    # Its go.mod replaces sdk/v4 with ../sdk (the repository's layout); the release it compiles with instead.
    (cd "$dir" && go mod edit -dropreplace github.com/pulumi/pulumi-kubernetes/sdk/v4 \
        -require "github.com/pulumi/pulumi-kubernetes/sdk/v4@v$K8S_SDK_VERSION" && go mod tidy)
    # main.go embeds two files the repository's generate step writes and the module zip lacks: the schema
    # (empty: the engine's GetSchema is answered from it, which only SDK generation asks for) and the
    # terraform mapping (none: this provider is not bridged).
    local cmd="$dir/cmd/pulumi-resource-kubernetes"
    [ -s "$cmd/schema-embed.json" ] || printf '{}' >"$cmd/schema-embed.json"
    [ -s "$cmd/terraform-mapping-embed.json" ] || printf '{}' >"$cmd/terraform-mapping-embed.json"
    (cd "$dir" && go build -trimpath -o "$BIN/pulumi-resource-kubernetes.tmp" \
        -ldflags "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$K8S_PROVIDER_VERSION" \
        ./cmd/pulumi-resource-kubernetes)
    mv "$BIN/pulumi-resource-kubernetes.tmp" "$BIN/pulumi-resource-kubernetes"
}

have pulumi || build_cli
have pulumi-resource-kubernetes || build_kubernetes_provider
"$BIN/pulumi" version >/dev/null
log "ready in $BIN"
