#!/usr/bin/env bash
# Assembles the container image's whole file set in DIR, the way distroless builds its images
# from Debian packages: the binary at /mirrorswap and exactly what it needs at run time.
#   bash scripts/image-rootfs.sh BINARY DIR
# - the shared libraries `ldd BINARY` lists and the dynamic loader (copied from this Debian);
# - CA certificates (/etc/ssl/certs/ca-certificates.crt, Debian's ca-certificates);
# - /etc/passwd and /etc/group with root, nobody and nonroot (65532), distroless's users;
# - /etc/nsswitch.conf (`hosts: files dns`: without it glibc asks DNS first and /etc/hosts
#   only when DNS is unreachable, so `localhost` would go to the cluster's DNS) and a fallback
#   /etc/hosts for runtimes that mount none (kubelet, Docker and `ctr --net-host` mount theirs);
# - /tmp (1777, where `serve` writes its development CA) and /home/nonroot (0700, 65532);
# - for each Debian package a file came from, its copyright file and its dpkg status entry in
#   /var/lib/dpkg/status.d/ (as distroless does), so image scanners see the glibc version.
# No shell, no package manager. Ownership needs root (or `buildah unshare`). Used by
# scripts/release-bundle.sh and by the Dockerfile's build stage, so both images hold the same files.
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 BINARY DIR" >&2; exit 2; }
binary=$1
root=$2
[ -x "$binary" ] || { echo "$binary: not an executable" >&2; exit 1; }
[ ! -e "$root" ] || [ -z "$(ls -A "$root")" ] || { echo "$root: exists and is not empty" >&2; exit 1; }
for tool in ldd dpkg-query; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: build on Debian (libc-bin, dpkg)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "run as root or under \`buildah unshare\`: the image's files need their owners" >&2; exit 1; }
certs=/etc/ssl/certs/ca-certificates.crt
[ -s "$certs" ] || { echo "$certs is missing: apt-get install ca-certificates" >&2; exit 1; }

mkdir -p "$root"
install -m 0755 "$binary" "$root/mirrorswap"

# Libraries and loader at the paths ldd prints (the loader's is the binary's PT_INTERP).
packages=(ca-certificates)
libraries=$(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
[ -n "$libraries" ] || { echo "ldd lists no libraries for $binary" >&2; exit 1; }
if ldd "$binary" | grep -q 'not found'; then
  ldd "$binary" >&2
  echo "a library of $binary is missing" >&2
  exit 1
fi
for library in $libraries; do
  mode=0644
  case "$library" in */ld-linux*) mode=0755 ;; esac
  install -D -m "$mode" "$(readlink -f "$library")" "$root$library"
  # dpkg knows the path ldd prints or, on merged /usr, the real one.
  owner=$(dpkg-query -S "$library" 2>/dev/null || dpkg-query -S "$(readlink -f "$library")")
  packages+=("${owner%%:*}")
done

install -D -m 0644 "$certs" "$root$certs"

install -d -m 0755 "$root/etc"
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
  'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$root/etc/passwd"
printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >"$root/etc/group"
printf '%s\n' 'passwd: files' 'group: files' 'hosts: files dns' >"$root/etc/nsswitch.conf"
printf '%s\n' '127.0.0.1 localhost' '::1 localhost ip6-localhost ip6-loopback' >"$root/etc/hosts"
chmod 0644 "$root"/etc/{passwd,group,nsswitch.conf,hosts}

install -d -m 1777 "$root/tmp"
install -d -m 0700 -o 65532 -g 65532 "$root/home/nonroot"

# Licences and package metadata of everything copied from Debian.
install -d -m 0755 "$root/var/lib/dpkg/status.d"
for package in $(printf '%s\n' "${packages[@]}" | sort -u); do
  install -D -m 0644 "/usr/share/doc/$package/copyright" "$root/usr/share/doc/$package/copyright"
  dpkg-query -s "$package" | grep -v -e '^Status:' -e '^Conffiles:' -e '^ /' >"$root/var/lib/dpkg/status.d/$package"
  chmod 0644 "$root/var/lib/dpkg/status.d/$package"
done

# Reproducible: every mtime pinned (the commit time when SOURCE_DATE_EPOCH is set).
find "$root" -exec touch -h -d "@${SOURCE_DATE_EPOCH:-0}" {} +
