#!/usr/bin/env bash
# Builds the OCI image that Istio's WasmPlugin pulls (`url: oci://REGISTRY/client-ip-filter:TAG`).
#
# Format: Istio's "compat" Wasm image variant with OCI media types: an OCI image manifest
# (application/vnd.oci.image.manifest.v1+json) whose single layer
# (application/vnd.oci.image.layer.v1.tar+gzip) is a gzipped tar holding `plugin.wasm`.
# Built with umoci (Debian package) as an OCI image layout; push it with skopeo:
#   skopeo copy oci:target/oci/client-ip-filter:TAG docker://REGISTRY/client-ip-filter:TAG
#
# Reproducible: the file times and the image's `created` fields come from SOURCE_DATE_EPOCH (default 0),
# so the same .wasm always gives the same manifest digest.
#
# Prints the manifest digest. For an oci:// URL, Istio compares WasmPlugin.spec.sha256 with the hex of the
# image *manifest* digest (not the sha256 of plugin.wasm, which is what it checks for http(s):// URLs).
#
# usage: oci/build.sh WASM LAYOUT_DIR TAG
set -euo pipefail

wasm=${1:?usage: oci/build.sh WASM LAYOUT_DIR TAG}
layout=${2:?usage: oci/build.sh WASM LAYOUT_DIR TAG}
tag=${3:?usage: oci/build.sh WASM LAYOUT_DIR TAG}
epoch=${SOURCE_DATE_EPOCH:-0}
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)

[[ -s $wasm ]] || { echo "oci/build.sh: $wasm is missing or empty (run make build)" >&2; exit 1; }
head -c 4 "$wasm" | cmp -s - <(printf '\0asm') || { echo "oci/build.sh: $wasm is not a WebAssembly module" >&2; exit 1; }

bundle=$(mktemp -d)
trap 'rm -rf "$bundle"' EXIT

rm -rf "$layout"
mkdir -p "$(dirname "$layout")"
umoci init --layout "$layout"
umoci new --image "$layout:$tag"
# Wasm is platform-neutral; umoci records the build host's os/architecture, which Istio ignores.
umoci config --image "$layout:$tag" --no-history --created "$created" \
    --manifest.annotation "org.opencontainers.image.title=client-ip-filter" \
    --manifest.annotation "org.opencontainers.image.version=$tag"
umoci unpack --rootless --image "$layout:$tag" "$bundle/b"
install -m 0644 "$wasm" "$bundle/b/rootfs/plugin.wasm"
touch -h -d "@$epoch" "$bundle/b/rootfs/plugin.wasm" "$bundle/b/rootfs"
umoci repack --image "$layout:$tag" \
    --history.created "$created" --history.created_by "oci/build.sh: plugin.wasm" "$bundle/b"
umoci gc --layout "$layout"

digest=$(python3 - "$layout" "$tag" <<'PY'
import json, sys
layout, tag = sys.argv[1:]
for m in json.load(open(f"{layout}/index.json"))["manifests"]:
    if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
        print(m["digest"])
        break
else:
    sys.exit(f"tag {tag} not in {layout}/index.json")
PY
)
printf 'built OCI image %s:%s (plugin.wasm: %s bytes, sha256 %s)\n' "$layout" "$tag" \
    "$(stat -c %s "$wasm")" "$(sha256sum "$wasm" | cut -d' ' -f1)"
printf 'manifest digest: %s\n' "$digest"
printf 'WasmPlugin.spec.sha256: %s\n' "${digest#sha256:}"
printf 'push: skopeo copy oci:%s:%s docker://REGISTRY/client-ip-filter:%s\n' "$layout" "$tag" "$tag"
