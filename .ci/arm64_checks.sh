#!/usr/bin/env bash
# The arm64 Lambda layer, run on aarch64 CPythons under qemu user-mode emulation (no binfmt,
# no docker): `qemu-aarch64 -L ROOTFS ROOTFS/usr/bin/python3.X`. Run by .ci/run after the
# x86_64 layer is built; required there. Alone: `bash .ci/arm64_checks.sh` (as root: it
# installs qemu-user and mmdebstrap from Debian when absent).
#
#   1. Root filesystems from Debian's own arm64 packages (mmdebstrap --variant=extract:
#      the interpreter, its standard library and shared libraries), cached in
#      $METRICS_AGG_ARM64_CACHE (default /var/cache/metrics-agg/arm64) and built when absent:
#      bookworm for CPython 3.11, trixie for 3.13. Lambda's arm64 runtimes include both; its
#      default here, python3.12, is in no Debian release, so it cannot be run this way.
#   2. One aarch64 wheel (cross-built with zig), and from it the deployed layer (python3.12,
#      dist/metrics-agg-layer-arm64.zip) and layers for 3.11 and 3.13: the same compiled
#      counter (checked byte for byte), the dependencies for each interpreter.
#   3. In each emulated interpreter, with the layer unzipped and on sys.path as Lambda puts
#      /opt/python: `import handler` works and the counter backend is rust;
#   4. the counter's parity corpus (.ci/arm64/counter_corpus.py: fixed-seed hypothesis
#      cases and the hand-written ones) gives exactly the x86_64 layer's results, saved
#      from a native run, with the compiled counter and with the pure-Python fallback;
#   5. one stream invocation against the local server (native, 127.0.0.1) stores the same
#      buckets as the x86_64 layer's and as the fallback's (.ci/arm64/invoke_compare.py).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${METRICS_AGG_ARM64_CACHE:-/var/cache/metrics-agg/arm64}"
MIRROR="${METRICS_AGG_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
RECIPE=1 # bump when the root filesystems' recipe changes: cached ones are rebuilt
RUNTIMES=("bookworm 3.11" "trixie 3.13")
TARGET=aarch64-unknown-linux-gnu
PY=.venv/bin/python
export PATH="$PWD/.venv/bin:$PATH"
step() { printf '\n=== %s ===\n' "$*"; }
die() {
    echo "arm64_checks: $*" >&2
    exit 1
}
started=$SECONDS
cache_state=warm

native_python() { # $1: 3.12 -> a native CPython of that minor (PYTHON312, PATH, pyenv)
    local given="PYTHON${1/./}" candidate
    for candidate in "${!given:-}" "python$1" "$(pyenv root 2>/dev/null)"/versions/"$1"*/bin/python"$1"; do
        [ -n "$candidate" ] || continue
        if "$candidate" -c "import sys; assert sys.version_info[:2] == (${1/./, })" 2>/dev/null; then
            command -v "$candidate"
            return
        fi
    done
    return 1
}

step "arm64: tools (qemu-user, mmdebstrap, the Rust $TARGET target)"
need=()
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"
qemu-aarch64 --version | head -n 1
PY312="$(native_python 3.12)" || die "no native CPython 3.12 for the x86_64 reference (set PYTHON312)"

step "arm64: root filesystems (Debian arm64 packages; cache $CACHE)"
rootfs_started=$SECONDS
for runtime in "${RUNTIMES[@]}"; do
    read -r suite version <<<"$runtime"
    dir="$CACHE/$suite"
    stamp=".metrics-agg-rootfs-$RECIPE-python$version"
    if [ -f "$dir/$stamp" ]; then
        echo "$suite: cached ($dir)"
        continue
    fi
    cache_state=cold
    echo "$suite: building python$version for arm64 into $dir"
    rm -rf "$dir" "$dir.tmp"
    mkdir -p "$CACHE"
    mmdebstrap --quiet --mode=root --arch=arm64 --variant=extract --include="python$version" \
        "$suite" "$dir.tmp" "$MIRROR"
    # extract runs no maintainer scripts: the merged-/usr links (trixie) are made here.
    for top in bin lib sbin; do
        [ -e "$dir.tmp/$top" ] || ln -s "usr/$top" "$dir.tmp/$top"
    done
    # Debian compiles the standard library at install time; extract does not. The same
    # minor's native CPython writes identical bytecode, in seconds instead of emulated minutes.
    if native="$(native_python "$version")"; then
        "$native" -m compileall -q -j 0 "$dir.tmp/usr/lib/python$version" >/dev/null 2>&1 || true
    fi
    touch "$dir.tmp/$stamp"
    mv "$dir.tmp" "$dir"
done
rootfs_seconds=$((SECONDS - rootfs_started))
du -sh "$CACHE"

work="$(mktemp -d "${TMPDIR:-/tmp}/metrics-agg-arm64.XXXXXX")"
trap 'rm -rf "$work"' EXIT

step "arm64: layers (one aarch64 wheel: python3.12 as deployed, 3.11 and 3.13 to run here)"
layers_started=$SECONDS
rm -f dist/wheels/metrics_agg-*_aarch64.whl
bash lambda/build_layer.sh --arch arm64 --out dist/metrics-agg-layer-arm64.zip
wheel="$(find dist/wheels -name 'metrics_agg-*_aarch64.whl' | head -n 1)"
[ -n "$wheel" ] || die "build_layer.sh left no aarch64 wheel in dist/wheels"
if [ ! -f dist/metrics-agg-layer-x86_64.zip ]; then
    bash lambda/build_layer.sh --arch x86_64 --out dist/metrics-agg-layer-x86_64.zip
fi
mkdir -p "$work/task" "$work/layers"
cp lambda/function/handler.py "$work/task/"
unzip -q dist/metrics-agg-layer-arm64.zip -d "$work/layers/arm64-3.12"
unzip -q dist/metrics-agg-layer-x86_64.zip -d "$work/layers/x86_64-3.12"
for runtime in "${RUNTIMES[@]}"; do
    read -r suite version <<<"$runtime"
    bash lambda/build_layer.sh --arch arm64 --python "$version" --wheel "$wheel" \
        --out "$work/layer-arm64-$version.zip" | grep -E 'build_layer: (\[2|/|contents)'
    unzip -q "$work/layer-arm64-$version.zip" -d "$work/layers/arm64-$version"
    cmp "$work/layers/arm64-$version/python/metrics_agg/_rust_counter.abi3.so" \
        "$work/layers/arm64-3.12/python/metrics_agg/_rust_counter.abi3.so" \
        || die "the $version layer's compiled counter differs from the deployed layer's"
done
file "$work/layers/arm64-3.12/python/metrics_agg/_rust_counter.abi3.so" 2>/dev/null || true
layers_seconds=$((SECONDS - layers_started))

emulated() { # $1 suite, $2 version: the emulated interpreter's command words
    echo "qemu-aarch64 -L $CACHE/$1 $CACHE/$1/usr/bin/python$2"
}

step "arm64: import handler in the emulated interpreters (the layer as /opt/python)"
emulated_started=$SECONDS
for runtime in "${RUNTIMES[@]}"; do
    read -r suite version <<<"$runtime"
    # shellcheck disable=SC2046 # the command's words
    (cd "$work" && env -i LANG=C.UTF-8 PLEXUS_API_URL=http://127.0.0.1:9/graphql \
        PLEXUS_API_KEY=unused AWS_REGION=us-east-1 $(emulated "$suite" "$version") -I -c "
import platform, sys
sys.path[:0] = ['task', 'layers/arm64-$version/python']
import handler, metrics_agg
import metrics_agg._rust_counter as compiled
assert platform.machine() == 'aarch64', platform.machine()
assert sys.version_info[:2] == (${version/./, }), sys.version
assert metrics_agg.counter_backend() == 'rust', metrics_agg.counter_backend()
assert '/layers/arm64-$version/python/metrics_agg/' in compiled.__file__, compiled.__file__
print(f'import: {platform.machine()} CPython {platform.python_version()}: handler imported,'
      f' counter backend rust ({compiled.__file__.split(\"/\")[-1]})')")
done

step "arm64: counter parity corpus, x86_64 results saved, replayed under emulation"
"$PY" .ci/arm64/counter_corpus.py "$work/corpus.pickle" 300
"$PY312" -I .ci/arm64/counter_replay.py "$work/layers/x86_64-3.12/python" "$work/corpus.pickle" \
    "$work/x86_64.pickle"
replays=()
for runtime in "${RUNTIMES[@]}"; do
    read -r suite version <<<"$runtime"
    # shellcheck disable=SC2046
    env -i LANG=C.UTF-8 $(emulated "$suite" "$version") -I .ci/arm64/counter_replay.py \
        "$work/layers/arm64-$version/python" "$work/corpus.pickle" "$work/arm64-$version.pickle"
    replays+=("$work/arm64-$version.pickle")
done
"$PY" .ci/arm64/counter_compare.py "$work/x86_64.pickle" "${replays[@]}"

step "arm64: one stream invocation per layer against the local server, same buckets"
runs=("x86_64:auto:$work/layers/x86_64-3.12/python:$PY312"
    "x86_64-fallback:python:$work/layers/x86_64-3.12/python:$PY312")
for runtime in "${RUNTIMES[@]}"; do
    read -r suite version <<<"$runtime"
    runs+=("arm64-$version:auto:$work/layers/arm64-$version/python:$(emulated "$suite" "$version")")
done
read -r suite version <<<"${RUNTIMES[0]}"
runs+=("arm64-$version-fallback:python:$work/layers/arm64-$version/python:$(emulated "$suite" "$version")")
"$PY" .ci/arm64/invoke_compare.py "$work/task" "${runs[@]}"
emulated_seconds=$((SECONDS - emulated_started))

echo
echo "arm64_checks: passed in $((SECONDS - started)) s ($cache_state root filesystem cache:" \
    "root filesystems ${rootfs_seconds} s, layers ${layers_seconds} s, emulated checks ${emulated_seconds} s)"
