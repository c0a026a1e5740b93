#!/usr/bin/env bash
# Builds the release artefacts of one version from a built .wasm and the native build's .so (make release
# runs it after make build and make native):
#
#   OUT/client_ip_filter-VERSION.wasm         the module (EnvoyFilter route, or a WasmPlugin https:// URL)
#   OUT/client_ip_filter_module-VERSION-x86_64-linux.so
#                                             the native build: the Envoy dynamic module for Envoy 1.40,
#                                             x86_64 Linux (docs/native.md; load it as libclient_ip_filter_module.so)
#   OUT/client-ip-filter-VERSION.oci.tar      the OCI image (oci/build.sh) as an OCI layout in a tar;
#                                             push: skopeo copy oci-archive:FILE:VERSION docker://REGISTRY/client-ip-filter:VERSION
#   OUT/DIGEST                                the image's manifest digest (sha256:...), what a WasmPlugin pins
#   OUT/SHA256SUMS                            sha256sum of the files above (check: cd OUT && sha256sum -c SHA256SUMS)
#
# Reproducible: the same .wasm gives byte-identical files (times from SOURCE_DATE_EPOCH, default 0; tar
# entries sorted, owned by 0:0, without access or change times).
#
# usage: oci/release.sh WASM OUT VERSION SO
set -euo pipefail

usage="usage: oci/release.sh WASM OUT VERSION SO"
wasm=${1:?$usage}
out=${2:?$usage}
version=${3:?$usage}
so=${4:?$usage}
epoch=${SOURCE_DATE_EPOCH:-0}
here=$(cd "$(dirname "$0")" && pwd)

[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] || {
    echo "oci/release.sh: version '$version' is not semver (MAJOR.MINOR.PATCH)" >&2; exit 1; }

# The .so must be what its name says: an x86-64 ELF shared object (ELF64, little-endian, ET_DYN, EM_X86_64).
[[ "$(od -An -N7 -tx1 "$so" | tr -d ' \n')" == 7f454c46020101 ]] && \
  [[ "$(od -An -j16 -N4 -tx1 "$so" | tr -d ' \n')" == 03003e00 ]] || {
    echo "oci/release.sh: $so is not an x86-64 ELF shared object" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$here/build.sh" "$wasm" "$work/layout" "$version" > "$work/build.log"
digest=$(sed -n 's/^manifest digest: //p' "$work/build.log")
[[ $digest =~ ^sha256:[0-9a-f]{64}$ ]] || { cat "$work/build.log" >&2; echo "oci/release.sh: no digest" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out"
module="client_ip_filter-$version.wasm"
image="client-ip-filter-$version.oci.tar"
native="client_ip_filter_module-$version-x86_64-linux.so"
install -m 0644 "$wasm" "$out/$module"
install -m 0644 "$so" "$out/$native"
find "$work/layout" -exec touch -h -d "@$epoch" {} +
tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -C "$work/layout" -cf "$out/$image" .
printf '%s\n' "$digest" > "$out/DIGEST"
(cd "$out" && sha256sum "$module" "$native" "$image" DIGEST > SHA256SUMS)

printf 'release %s in %s:\n' "$version" "$out"
(cd "$out" && sed 's/^/  /' SHA256SUMS)
printf 'image manifest digest: %s\n' "$digest"
printf 'WasmPlugin: url: oci://REGISTRY/client-ip-filter@%s\n' "$digest"
printf '            sha256: %s\n' "${digest#sha256:}"
printf 'push: skopeo copy oci-archive:%s:%s docker://REGISTRY/client-ip-filter:%s\n' "$out/$image" "$version" "$version"
