#!/usr/bin/env bash
# A real Kubernetes control plane for the tests and for users without a cluster: kube-apiserver,
# kube-controller-manager and kube-scheduler (k8s.io/kubernetes), etcd (go.etcd.io/etcd/server/v3) and KWOK
# (sigs.k8s.io/kwok, nodes and pods without a kubelet), all built from the Go module proxy into a versioned
# cache, the way scripts/fetch-kafka.sh keeps Kafka's jars. Idempotent: skips whatever is already built.
# A cold build takes 13-20 minutes on 2 cores (k8s.io/kubernetes is most of it); a warm one nothing.
set -euo pipefail

K8S_VERSION="${OPENBELL_K8S_VERSION:-1.37.2}"
ETCD_VERSION="${OPENBELL_ETCD_VERSION:-3.7.3}"
KWOK_VERSION="${OPENBELL_KWOK_VERSION:-0.8.0}"
CACHE="${OPENBELL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/openbell}"
ROOT="$CACHE/kubernetes-v$K8S_VERSION"
BIN="$ROOT/bin"
SRC="$ROOT/src"
mkdir -p "$BIN" "$SRC"

log() { printf 'kube-build: %s\n' "$*" >&2; }
have() { [ -x "$BIN/$1" ] && [ -s "$BIN/$1" ]; }

# The staging modules k8s.io/kubernetes replaces with ./staging/src/... in its own go.mod: a consumer must
# replace each with its published v0.X.Y (the go command ignores a dependency's replace directives).
k8s_replaces() {
    local gomod staging
    gomod="$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')"
    staging="v0.${K8S_VERSION#1.}"
    sed -n '/^replace (/,/^)/p' "$gomod" | awk -v v="$staging" '$2 == "=>" && $3 ~ /^\.\/staging\// {print "\t" $1 " => " $1 " " v}'
}

build_kubernetes() {
    local dir="$SRC/kubernetes"
    mkdir -p "$dir"
    log "kube-apiserver, kube-controller-manager, kube-scheduler v$K8S_VERSION from k8s.io/kubernetes (cold: 13-20 min)"
    {
        echo "module openbell.local/kubernetes"
        echo
        echo "go 1.26"
        echo
        echo "require k8s.io/kubernetes v$K8S_VERSION"
        echo
        echo "replace ("
        k8s_replaces
        echo ")"
    } >"$dir/go.mod"
    cat >"$dir/tools.go" <<'EOF'
//go:build tools

// The commands this module builds; the build tag keeps the go command from compiling this file.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
EOF
    (cd "$dir" && go mod tidy)
    local v="k8s.io/component-base/version"
    local minor="${K8S_VERSION#1.}"
    minor="${minor%%.*}"
    (cd "$dir" && go build -trimpath -o "$BIN/" \
        -ldflags "-s -w -X $v.gitVersion=v$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler)
}

build_etcd() {
    local dir="$SRC/etcd"
    mkdir -p "$dir"
    log "etcd v$ETCD_VERSION from go.etcd.io/etcd/server/v3"
    cat >"$dir/go.mod" <<EOF
module openbell.local/etcd

go 1.26

require go.etcd.io/etcd/server/v3 v$ETCD_VERSION

replace (
	go.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 v$ETCD_VERSION
	go.etcd.io/etcd/client/pkg/v3 => go.etcd.io/etcd/client/pkg/v3 v$ETCD_VERSION
	go.etcd.io/etcd/client/v3 => go.etcd.io/etcd/client/v3 v$ETCD_VERSION
	go.etcd.io/etcd/pkg/v3 => go.etcd.io/etcd/pkg/v3 v$ETCD_VERSION
)
EOF
    cat >"$dir/main.go" <<'EOF'
// etcd's own entry point (go.etcd.io/etcd/server/v3/etcdmain), built as a binary.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
    (cd "$dir" && go mod tidy && go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" .)
}

build_kwok() {
    log "kwok v$KWOK_VERSION from sigs.k8s.io/kwok"
    GOBIN="$BIN" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION"
    # KWOK's stages (what it does to a fake node and pod) ship in the module, not in the binary.
    local dir
    dir="$(go mod download -json "sigs.k8s.io/kwok@v$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')"
    rm -rf "$ROOT/kwok-stages"
    mkdir -p "$ROOT/kwok-stages"
    local stage
    for stage in "$dir"/kustomize/stage/node/fast/*.yaml "$dir"/kustomize/stage/node/heartbeat/*.yaml \
        "$dir"/kustomize/stage/pod/fast/*.yaml; do
        [ "$(basename "$stage")" = kustomization.yaml ] || cp "$stage" "$ROOT/kwok-stages/"
    done
    chmod -R u+w "$ROOT/kwok-stages"
    ls "$ROOT"/kwok-stages/*.yaml >/dev/null
}

# The operators' own CRDs, from the modules that carry them (never committed): "source module@version path...".
# Where no module is served (Altinity's clickhouse-operator, grafana/k6-operator: refused) or none carries
# YAML (Strimzi ships its CRDs generated at release, not in any module or jar), infra/schemas keeps a
# transcription; the README lists them.
CRD_SOURCES=(
    "gateway-api sigs.k8s.io/gateway-api@v1.6.3 config/crd/standard/gateway.networking.k8s.io_gatewayclasses.yaml config/crd/standard/gateway.networking.k8s.io_gateways.yaml config/crd/standard/gateway.networking.k8s.io_httproutes.yaml"
    "karpenter sigs.k8s.io/karpenter@v1.15.0 pkg/apis/crds/karpenter.sh_nodepools.yaml pkg/apis/crds/karpenter.sh_nodeclaims.yaml kwok/apis/crds/karpenter.kwok.sh_kwoknodeclasses.yaml"
    "karpenter-aws github.com/aws/karpenter-provider-aws@v1.15.2 pkg/apis/crds/karpenter.k8s.aws_ec2nodeclasses.yaml"
    "cloudnative-pg github.com/cloudnative-pg/cloudnative-pg@v1.30.1 config/crd/bases/postgresql.cnpg.io_clusters.yaml config/crd/bases/postgresql.cnpg.io_scheduledbackups.yaml"
    "barman-cloud github.com/cloudnative-pg/plugin-barman-cloud@v0.15.0 config/crd/bases/barmancloud.cnpg.io_objectstores.yaml"
    "prometheus-operator github.com/prometheus-operator/prometheus-operator@v0.85.0 example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml"
    "envoy-gateway github.com/envoyproxy/gateway@v1.9.1 charts/gateway-helm/charts/crds/crds/generated/gateway.envoyproxy.io_envoyproxies.yaml"
    "chaos-mesh github.com/chaos-mesh/chaos-mesh@v0.9.1-0.20260902003049-47411975a8cb config/crd/bases/chaos-mesh.org_networkchaos.yaml"
)

fetch_crds() {
    local line source ref module version dir path tmp
    tmp="$ROOT/crds.tmp"
    rm -rf "$tmp" && mkdir -p "$tmp"
    for line in "${CRD_SOURCES[@]}"; do
        read -r source ref paths <<<"$line"
        module="${ref%@*}" version="${ref#*@}"
        log "CRDs from $ref"
        # A module whose go directive is newer than this Go still unpacks (the go command then reports an
        # error and no Dir): the files are what is needed, so look in the module cache directly.
        go mod download "$ref" >/dev/null 2>&1 || true
        dir="$(go env GOMODCACHE)/$module@$version"
        mkdir -p "$tmp/$source"
        for path in $paths; do
            [ -f "$dir/$path" ] || { log "$ref carries no $path"; exit 3; }
            cp "$dir/$path" "$tmp/$source/"
        done
    done
    chmod -R u+w "$tmp"
    printf '%s\n' "${CRD_SOURCES[@]}" >"$tmp/SOURCES"
    rm -rf "$ROOT/crds" && mv "$tmp" "$ROOT/crds"
}

have etcd || build_etcd
{ have kwok && [ -d "$ROOT/kwok-stages" ]; } || build_kwok
{ have kube-apiserver && have kube-controller-manager && have kube-scheduler; } || build_kubernetes
{ [ -f "$ROOT/crds/SOURCES" ] && [ "$(cat "$ROOT/crds/SOURCES")" = "$(printf '%s\n' "${CRD_SOURCES[@]}")" ]; } || fetch_crds
log "ready in $BIN"
