#!/usr/bin/env bash
# Builds vere 3.0 with Seguro's hook mode (--seguro PATH): runs the shared
# recipe ../shared/tools/vere-build/build-3.0.sh (relative to this repo),
# applies seguro-hook.patch to $WORK/src/vere (idempotently: a changed patch
# replaces the one applied before), rebuilds incrementally and prints the
# binary's path. See docs/runtime-protocol.md, "The vere side".
#
#   WORK=DIR MIRROR_ROOT=DIR tools/vere-hook/build.sh          # -> $WORK/out/urbit
#   WORK=DIR MIRROR_ROOT=DIR tools/vere-hook/build.sh --check  # only say what is missing
#
# Env: WORK (build dir, outside the repo), MIRROR_ROOT (the fetched mirrors,
# owner+name/repo), IVORY (default: ../shared/fixtures/ivory.pill), JOBS
# (default 2). On a missing input it exits 1 with one line naming it.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
RECIPE=$REPO/../shared/tools/vere-build/build-3.0.sh
PATCH=$HERE/seguro-hook.patch

die() { echo "vere-hook: $*" >&2; exit 1; }

[ -n "${WORK:-}" ] || die "set WORK to a build directory outside the repo"
[ -n "${MIRROR_ROOT:-}" ] || die "set MIRROR_ROOT to the folder of the fetched mirrors (owner+name/repo)"
IVORY=${IVORY:-$REPO/../shared/fixtures/ivory.pill}
export JOBS=${JOBS:-2}

check() {
  [ -f "$RECIPE" ] || die "the recipe $RECIPE is missing"
  [ -f "$IVORY" ] || die "the ivory pill $IVORY is missing (set IVORY)"
  local m
  for m in urbit+vere urbit+urcrypt skeeto+pdjson dfoxfranke+libaes_siv PeterScott+murmur3 \
    bitcoin-core+secp256k1 ucb-bar+berkeley-softfloat-3 gpakosz+whereami; do
    [ -d "$MIRROR_ROOT/$m/repo" ] || die "the mirror $MIRROR_ROOT/$m/repo is missing (fetch github:${m/+//})"
  done
  local t
  for t in gcc make python3 patch git ar; do
    command -v "$t" >/dev/null || die "the tool $t is missing"
  done
  # header -> Debian package (docs/operations.md lists the apt-get line)
  local h
  for h in gmp.h:libgmp-dev uv.h:libuv1-dev openssl/ssl.h:libssl-dev curl/curl.h:libcurl4-openssl-dev \
    lmdb.h:liblmdb-dev sigsegv.h:libsigsegv-dev h2o.h:libh2o-dev zlib.h:zlib1g-dev \
    dns_sd.h:libavahi-compat-libdnssd-dev; do
    echo "#include <${h%%:*}>" | gcc -E -x c - >/dev/null 2>&1 ||
      die "the header ${h%%:*} is missing (apt-get install ${h##*:})"
  done
}

check
[ "${1:-}" = "--check" ] && exit 0

mkdir -p "$WORK"
V=$WORK/src/vere
run_recipe() {
  WORK=$WORK MIRROR_ROOT=$MIRROR_ROOT IVORY=$IVORY bash "$RECIPE" >"$WORK/build.log" 2>&1 ||
    die "the build failed; see $WORK/build.log"
}

# First run: the recipe extracts the sources (and builds stock vere once).
[ -e "$V/.done" ] || run_recipe

# Apply the patch, replacing an older one if the patch changed.
SUM=$(sha256sum "$PATCH" | cut -d' ' -f1)
if [ "$(cat "$V/.seguro-hook.sum" 2>/dev/null)" != "$SUM" ]; then
  if [ -e "$V/.seguro-hook.patch" ]; then
    patch -s -d "$V" -p1 -R <"$V/.seguro-hook.patch" || die "cannot take back the old patch in $V; remove $WORK"
    rm -f "$V/.seguro-hook.patch" "$V/.seguro-hook.sum"
  fi
  patch -s -d "$V" -p1 --forward <"$PATCH" || die "seguro-hook.patch does not apply to $V; remove $WORK"
  cp "$PATCH" "$V/.seguro-hook.patch"
  echo "$SUM" >"$V/.seguro-hook.sum"
fi

run_recipe
"$WORK/out/urbit" -R >/dev/null 2>&1 || die "the built $WORK/out/urbit does not run; see $WORK/build.log"
echo "$WORK/out/urbit"
