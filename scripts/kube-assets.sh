#!/usr/bin/env bash
# Prepares the Kubernetes control plane the tests start (tests/common/control_plane.rs) in envtest's
# layout: a directory holding `kube-apiserver` and `etcd`, which KUBEBUILDER_ASSETS names.
#
#   bash scripts/kube-assets.sh KUBE_APISERVER.xz [DIR]
#
# decompresses the xz-compressed kube-apiserver v1.36.2 into DIR (default target/kube-assets),
# checks its SHA-256 against the one pinned here, links Debian's etcd (`etcd-server`) next to
# it and prints DIR. Idempotent: a binary already there with the right checksum is kept.
# With envtest's own binaries (`setup-envtest use -p path`), skip this and point
# KUBEBUILDER_ASSETS at them instead.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# kube-apiserver v1.36.2 linux/amd64, decompressed (the .xz's own checksum is beside it).
apiserver_sha256=656c79a450671207493ed1c90d0eaa31212b4fc052bf74056f3a5963573c5c25

xz_file=${1:?usage: kube-assets.sh KUBE_APISERVER.xz [DIR]}
dir=${2:-$root/target/kube-assets}
mkdir -p "$dir"

sum_of() { sha256sum "$1" 2>/dev/null | cut -d' ' -f1; }
if [ ! -x "$dir/kube-apiserver" ] || [ "$(sum_of "$dir/kube-apiserver")" != "$apiserver_sha256" ]; then
  xz -dc "$xz_file" >"$dir/kube-apiserver.partial"
  if [ "$(sum_of "$dir/kube-apiserver.partial")" != "$apiserver_sha256" ]; then
    rm -f "$dir/kube-apiserver.partial"
    echo "$xz_file does not decompress to kube-apiserver v1.36.2 (SHA-256 $apiserver_sha256)" >&2
    exit 1
  fi
  chmod 0755 "$dir/kube-apiserver.partial"
  mv "$dir/kube-apiserver.partial" "$dir/kube-apiserver"
fi

etcd=$(command -v etcd || true)
[ -n "$etcd" ] || { echo "etcd is not installed: apt-get install etcd-server" >&2; exit 1; }
ln -sf "$etcd" "$dir/etcd"
echo "$dir"
