#!/bin/sh
# Installs the seguro binary for this machine from a Seguro release:
#   curl -fsSL RELEASE_URL/install.sh | sh
# It downloads seguro-VERSION-TARGET and SHA256SUMS from the release, checks
# the checksum, and installs the binary as $SEGURO_INSTALL_DIR/seguro
# (default ~/.local/bin). SEGURO_RELEASE_URL overrides where it downloads from.
set -eu

base="${SEGURO_RELEASE_URL:-@BASE_URL@}"
version="@VERSION@"
case "$base" in
  @*) echo "error: this install.sh names no release URL; set SEGURO_RELEASE_URL" >&2; exit 1 ;;
esac

case "$(uname -s)" in
  Linux) os=unknown-linux-gnu ;;
  Darwin) os=apple-darwin ;;
  *) echo "error: no seguro release for $(uname -s); build from source (README.md)" >&2; exit 1 ;;
esac
case "$(uname -m)" in
  x86_64 | amd64) arch=x86_64 ;;
  aarch64 | arm64) arch=aarch64 ;;
  *) echo "error: no seguro release for $(uname -m); build from source (README.md)" >&2; exit 1 ;;
esac

name="seguro-$version-$arch-$os"
dest="${SEGURO_INSTALL_DIR:-$HOME/.local/bin}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

curl -fsSL "$base/$name" -o "$tmp/$name"
curl -fsSL "$base/SHA256SUMS" -o "$tmp/SHA256SUMS"
grep "  $name\$" "$tmp/SHA256SUMS" > "$tmp/sum" || {
  echo "error: $name is not in the release's SHA256SUMS" >&2
  exit 1
}
if command -v sha256sum > /dev/null; then check="sha256sum -c --status"; else check="shasum -a 256 -c -s"; fi
(cd "$tmp" && $check sum) || {
  echo "error: $name does not match its SHA-256 in SHA256SUMS; nothing installed" >&2
  exit 1
}
mkdir -p "$dest"
chmod 0755 "$tmp/$name"
mv "$tmp/$name" "$dest/seguro"
echo "installed $dest/seguro ($version, $arch-$os)"
case ":$PATH:" in *":$dest:"*) ;; *) echo "add it to your PATH:  export PATH=\"$dest:\$PATH\"" ;; esac
