#!/usr/bin/env bash
# The release bundle an operator carries into a disconnected site, built with no Docker engine
# and no network (beyond the package registries, for a missing helm):
#   target/bundle/mirrorswap-VERSION.tgz      the Helm chart (`helm package`)
#   target/bundle/mirrorswap-VERSION.oci.tar  the image, an OCI archive tagged mirrorswap:VERSION
#   target/bundle/INSTALL.md                  push it, install the chart
#   target/bundle/SHA256SUMS
# The image is built by buildah from scratch (vfs storage in a temporary directory under target/,
# removed afterwards) with the file set of scripts/image-rootfs.sh, the user, entrypoint, command
# and labels of the Dockerfile. It is reproducible: files and dates are pinned to the commit time
# (SOURCE_DATE_EPOCH, by default the commit's), so one commit gives one image digest.
# The release binary is target/release/mirrorswap, brought up to date by the Dockerfile's
# `cargo build` line (a no-op when CI already built it); MIRRORSWAP_BINARY=FILE packages another.
# Needs root (file ownership in the image) or `buildah unshare`.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
chart_version=$(sed -n 's/^version: *//p' helm/mirrorswap/Chart.yaml)
app_version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' helm/mirrorswap/Chart.yaml)
if [ "$chart_version" != "$version" ] || [ "$app_version" != "$version" ]; then
  echo "versions differ: Cargo.toml $version, Chart.yaml version $chart_version, appVersion $app_version" >&2
  exit 1
fi
revision=$(git rev-parse HEAD)
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct HEAD)}
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "warning: uncommitted changes; the image's revision label ($revision) does not include them" >&2
fi

# Run from a cargo process (tests/airgap.rs), cargo's per-package variables would reach ring's
# build script (it watches CARGO_MANIFEST_DIR) and rebuild what CI's release step built.
for name in $(compgen -e | grep -E '^(CARGO_(MANIFEST_|PKG_|CRATE_|PRIMARY_|TARGET_TMPDIR|BIN_)|OUT_DIR$)' || true); do
  unset "$name"
done
binary=${MIRRORSWAP_BINARY:-}
if [ -z "$binary" ]; then
  build=$(sed -n 's/^RUN \(cargo build .*\)$/\1/p' Dockerfile)
  [ -n "$build" ] || { echo "no cargo build line in the Dockerfile" >&2; exit 1; }
  $build
  binary=target/release/mirrorswap
fi
# Only now: ring's build script reruns when SOURCE_DATE_EPOCH changes, so exporting it before
# the build would rebuild what CI's release step built.
export SOURCE_DATE_EPOCH=$epoch

helm=$(command -v helm || true)
[ -x target/tools/bin/helm ] && helm=target/tools/bin/helm
if [ -z "$helm" ]; then
  helm="$(bash scripts/install-tools.sh)/helm"
fi
for tool in buildah sha256sum; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install $tool" >&2; exit 1; }
done

bundle=$repo/target/bundle
work=$repo/target/bundle-work
storage=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs)
cleanup() {
  buildah "${storage[@]}" rm --all >/dev/null 2>&1 || true
  rm -rf "$work"
}
cleanup
trap cleanup EXIT
rm -rf "$bundle"
mkdir -p "$bundle" "$work/tmp"
# buildah's temporary files (layer diffs, the archive being written) stay under target/ too.
export TMPDIR=$work/tmp BUILDAH_ISOLATION=chroot

bash scripts/image-rootfs.sh "$binary" "$work/rootfs"

archive=mirrorswap-$version.oci.tar
container=$(buildah "${storage[@]}" from --quiet scratch)
mount=$(buildah "${storage[@]}" mount "$container")
cp -a "$work/rootfs/." "$mount/"
touch -h -d "@$SOURCE_DATE_EPOCH" "$mount"
buildah "${storage[@]}" umount "$container" >/dev/null
# The same settings as the Dockerfile's final stage (tests/airgap.rs compares them).
buildah "${storage[@]}" config \
  --os linux --arch amd64 \
  --user 65532:65532 --workingdir / \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --port 8443/tcp --port 8080/tcp \
  --entrypoint '["/mirrorswap"]' --cmd '["serve"]' \
  --label org.opencontainers.image.title=mirrorswap \
  --label "org.opencontainers.image.description=Kubernetes mutating admission webhook that rewrites container image references to mirror registries" \
  --label org.opencontainers.image.source=https://github.com/mirrorswap/mirrorswap \
  --label org.opencontainers.image.licenses=Apache-2.0 \
  --label "org.opencontainers.image.version=$version" \
  --label "org.opencontainers.image.revision=$revision" \
  --label "org.opencontainers.image.created=$created" \
  --created-by "scripts/release-bundle.sh" \
  "$container"
buildah "${storage[@]}" commit --quiet --identity-label=false --timestamp "$SOURCE_DATE_EPOCH" \
  --format oci --disable-compression=false --rm \
  "$container" "oci-archive:$bundle/$archive:mirrorswap:$version" >/dev/null
touch -d "@$SOURCE_DATE_EPOCH" "$bundle/$archive"
digest=$(tar -xOf "$bundle/$archive" index.json | python3 -c 'import json, sys; print(json.load(sys.stdin)["manifests"][0]["digest"])')

"$helm" package helm/mirrorswap --destination "$bundle" >/dev/null

cat >"$bundle/INSTALL.md" <<EOF
# mirrorswap $version: air-gapped install

| File | What |
|---|---|
| \`mirrorswap-$version.oci.tar\` | the image (OCI archive, tag \`mirrorswap:$version\`, digest \`$digest\`), built from commit \`$revision\` |
| \`mirrorswap-$version.tgz\` | the Helm chart |
| \`SHA256SUMS\` | checksums of both and of this file |

No Docker engine is needed: \`skopeo\` (Debian/RHEL package) and \`helm\`.

1. **Verify** what you carried in:

       sha256sum --check SHA256SUMS

2. **Push** the image to your mirror registry (here \`harbor.example.org/airgap-images\`).
   \`--preserve-digests\` keeps the digest above; add \`--dest-creds USER:PASSWORD\`, and
   \`--dest-cert-dir DIR\` with the registry's CA as \`DIR/ca.crt\` if a private CA signs it:

       skopeo copy --preserve-digests oci-archive:mirrorswap-$version.oci.tar:mirrorswap:$version \\
         docker://harbor.example.org/airgap-images/mirrorswap:$version

3. **Install** the chart with the image pointing at the mirror (your rules and the other values
   as usual, \`-f values.yaml\`); pinning the digest is optional:

       helm install mirrorswap ./mirrorswap-$version.tgz --namespace mirrorswap --create-namespace \\
         --set image.repository=harbor.example.org/airgap-images/mirrorswap \\
         --set image.digest=$digest

   If the mirror needs credentials to pull, create a \`kubernetes.io/dockerconfigjson\` Secret in the
   namespace and add \`--set "imagePullSecrets[0].name=SECRET"\`.

The image runs as user 65532 (nonroot), with no shell and no package manager:
\`ENTRYPOINT ["/mirrorswap"]\`, \`CMD ["serve"]\`.
EOF

(cd "$bundle" && sha256sum "mirrorswap-$version.tgz" "$archive" INSTALL.md >SHA256SUMS)
echo "$bundle: mirrorswap:$version $digest"
