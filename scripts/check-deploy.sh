#!/usr/bin/env bash
# Checks the deploy artifacts offline:
#   - helm lint --strict and helm template of the chart for every values file in helm/mirrorswap/ci/
#     (defaults, cert-manager, existing Secret, Palette's image-swap values with and without a
#     detected registry-info Secret, Palette's imageSwap block, rules from a Secret through the API
#     with its Role/RoleBinding, workload templates in opt-in mode, the operations kit: HPA,
#     PrometheusRule, dashboard; registry-aware swapping; the leak guard's
#     ValidatingWebhookConfiguration and the audit ClusterRole);
#   - the kustomizations `mirrorswap certs` writes over manifests/base, opt-in, workloads,
#     opt-in-workloads and registry-check, and over manifests/base with --namespace other;
#   - every rendered document and every file in manifests/base validated against the official
#     Kubernetes schemas (kubernetes-validate --strict) for the chart's minimum and newest
#     supported versions. CRD kinds (cert-manager, ServiceMonitor) have no official schema and
#     are reported as warnings.
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$(bash scripts/install-tools.sh):$PATH"
versions=(1.27.0 1.37.0) # helm/mirrorswap/Chart.yaml kubeVersion >=1.27; newest schema kubernetes-validate ships
chart=helm/mirrorswap
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

for values in "$chart"/ci/*.yaml; do
  name=$(basename "$values" .yaml)
  echo "helm lint/template: $name"
  helm lint --strict --quiet "$chart" --namespace mirrorswap --values "$values"
  helm template ms "$chart" --namespace mirrorswap --values "$values" >"$out/chart-$name.yaml"
done

cargo build --quiet --bin mirrorswap
certs() { # NAME BASE [ARGS…]
  local name=$1 base=$2
  shift 2
  echo "mirrorswap certs${*:+ $*} + kubectl kustomize: manifests/$base"
  target/debug/mirrorswap certs --out-dir "$out/certs-$name" --base "manifests/$base" "$@" >/dev/null 2>&1
  kubectl kustomize "$out/certs-$name" >"$out/kustomized-$name.yaml"
  grep -q 'caBundle: LS0t' "$out/kustomized-$name.yaml" || { echo "caBundle not set in manifests/$base" >&2; exit 1; }
}
for base in base opt-in workloads opt-in-workloads registry-check; do
  certs "$base" "$base"
done
certs namespace-other base --namespace other
if grep -q 'namespace: mirrorswap$' "$out/kustomized-namespace-other.yaml"; then
  echo "certs --namespace other left objects in mirrorswap" >&2
  exit 1
fi

manifests=()
for file in manifests/base/*.yaml; do
  [ "$(basename "$file")" = kustomization.yaml ] || manifests+=("$file")
done
for version in "${versions[@]}"; do
  echo "kubernetes-validate --strict, Kubernetes $version"
  kubernetes-validate --strict --quiet --kubernetes-version "$version" "${manifests[@]}" "$out"/*.yaml
done
echo "deploy checks passed"
