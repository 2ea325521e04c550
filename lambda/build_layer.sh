#!/usr/bin/env bash
# Build the Lambda layer: dist/metrics-agg-layer-<arch>.zip, the runtime only (no local tooling).
#
#   bash lambda/build_layer.sh [--arch x86_64|arm64] [--no-zig]
#       [--python 3.11|3.12|3.13] [--wheel FILE] [--out FILE]
#
# 1. A manylinux2014 (glibc 2.17) wheel of the package with the compiled counter (maturin,
#    release). zig is the linker (`maturin --zig`; the ziglang wheel from PyPI, installed
#    once into ~/.cache/metrics-agg/zig when no zig is found): linked natively against this
#    machine's glibc 2.36, the .so needs GLIBC_2.34 symbols, too new for manylinux2014 and
#    for the python3.11 runtime (Amazon Linux 2). zig also cross-links arm64 without a cross
#    toolchain (the Rust target is still needed). maturin's auditwheel check fails the build
#    on a non-compliant .so; `auditwheel show` double-checks when auditwheel is installed.
#    `--no-zig` links natively and accepts up to manylinux_2_34 (Amazon Linux 2023, i.e. the
#    python3.12 runtime and later only).
# 2. That wheel plus its runtime dependencies for CPython 3.12 on the target platform,
#    installed into the layer's python/ folder. botocore (and boto3) are left out: the Lambda
#    Python runtime provides them (the package only uses botocore for SigV4/IAM auth, the
#    Secrets Manager key, SQS and the activity table), and a second copy would add ~25 MB and shadow the runtime's. urllib3
#    2.x is shipped (the package needs >=2; the runtime may carry 1.26) within the range the
#    runtime's botocore accepts on Python >= 3.10 (>=1.25.4,!=2.2.0,<3), since the layer's
#    copy comes first on sys.path and botocore will import it too.
# 3. Stripped (__pycache__, tests, bin/, dist-info install records and SBOM; maturin --strip drops
#    the extension's symbols), then
#    precompiled for 3.12 as unchecked-hash .pyc: /opt is read-only on Lambda, so without
#    them every cold start would compile every module from source.
# 4. Zipped with fixed timestamps (same inputs, same zip, so `sam deploy` skips the upload),
#    size printed; the build fails over 50 MB zipped or 250 MB unzipped (Lambda's limits).
#    Written as dist/metrics-agg-layer-<arch>.zip and copied to dist/metrics-agg-layer.zip,
#    the one path template.yaml deploys: `sam package` uploads every ContentUri whatever its
#    Condition, so an arch-specific path there would make an arm64 deploy need the x86_64 zip.
#    Deploy with the Architecture parameter of the last build (printed at the end).
#
# --python X.Y builds for another Lambda runtime than python3.12 (dependencies with compiled
# code, e.g. orjson, are per CPython minor; template.yaml deploys 3.12). --wheel FILE installs
# an already-built metrics_agg wheel instead of running maturin (one abi3 wheel, several
# layers; a build leaves its wheel in dist/wheels/). --out FILE writes the zip there and
# leaves dist/metrics-agg-layer.zip alone. .ci/arm64_checks.sh uses all three.
#
# Environment: PYTHON (host interpreter running pip and maturin; default python3), PYTHON312
# (for the .pyc and the import check; found via pyenv when unset; PYTHON311/PYTHON313 the
# same with --python 3.11/3.13), MATURIN (default maturin),
# ZIG (a zig command; default zig on PATH, else the host Python's ziglang, else the cached
# one), CARGO_TARGET_DIR (default /tmp/layer-target, away from the developers' target/).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; }
die() {
    echo "build_layer: $*" >&2
    exit 1
}

ARCH=x86_64
USE_ZIG=1
LAMBDA_PYTHON=3.12
GIVEN_WHEEL=
GIVEN_OUT=
while [ $# -gt 0 ]; do
    case "$1" in
        --arch)
            [ $# -ge 2 ] || die "--arch needs a value"
            ARCH="$2"
            shift 2
            ;;
        --arch=*) ARCH="${1#*=}"; shift ;;
        --no-zig) USE_ZIG=0; shift ;;
        --python | --wheel | --out)
            [ $# -ge 2 ] || die "$1 needs a value"
            case "$1" in
                --python) LAMBDA_PYTHON="$2" ;;
                --wheel) GIVEN_WHEEL="$(realpath -m "$2")" ;;
                --out) GIVEN_OUT="$2" ;;
            esac
            shift 2
            ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

case "$ARCH" in
    x86_64) MACHINE=x86_64 ;;
    arm64) MACHINE=aarch64 ;;
    *) die "--arch must be x86_64 or arm64, got '$ARCH'" ;;
esac
case "$LAMBDA_PYTHON" in
    3.11 | 3.12 | 3.13) ;;
    *) die "--python must be 3.11, 3.12 or 3.13 (a Lambda runtime), got '$LAMBDA_PYTHON'" ;;
esac
[ -z "$GIVEN_WHEEL" ] || [ -f "$GIVEN_WHEEL" ] || die "--wheel: no such file: $GIVEN_WHEEL"
TARGET="$MACHINE-unknown-linux-gnu"
if [ "$ARCH" = arm64 ] && [ -z "$GIVEN_WHEEL" ]; then
    rustup target list --installed 2>/dev/null | grep -qx "$TARGET" \
        || die "arm64 needs the Rust target: rustup target add $TARGET"
    if [ "$USE_ZIG" = 0 ]; then
        command -v aarch64-linux-gnu-gcc >/dev/null \
            || die "arm64 --no-zig needs a cross linker: apt-get install gcc-aarch64-linux-gnu"
        export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
    fi
fi

# Paths under python/ left out of the layer (tests/test_layer_smoke.py holds the same list).
LOCAL_TOOLING="metrics_agg/local metrics_agg/__main__.py metrics_agg/graphql/codegen.py"
MAX_ZIPPED=$((50 * 1024 * 1024))
MAX_UNZIPPED=$((250 * 1024 * 1024))
PYTHON="${PYTHON:-python3}"
MATURIN="${MATURIN:-maturin}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/layer-target}"

find_python() { # $1: 3.12 -> $PYTHON312, python3.12, pyenv's 3.12.x
    local given="PYTHON${1/./}"
    if [ -n "${!given:-}" ]; then
        echo "${!given}"
        return
    fi
    local candidate
    for candidate in "python$1" "$(pyenv root 2>/dev/null)"/versions/"$1"*/bin/python"$1"; do
        if "$candidate" -c "import sys; assert sys.version_info[:2] == (${1/./, })" 2>/dev/null; then
            command -v "$candidate"
            return
        fi
    done
}

find_zig() {
    if [ -n "${ZIG:-}" ]; then
        echo "$ZIG"
    elif command -v zig >/dev/null; then
        command -v zig
    elif "$PYTHON" -c 'import ziglang' 2>/dev/null; then
        echo "$(command -v "$PYTHON") -m ziglang"
    else
        local venv="${XDG_CACHE_HOME:-$HOME/.cache}/metrics-agg/zig"
        if ! "$venv/bin/python" -c 'import ziglang' 2>/dev/null; then
            echo "build_layer:       installing ziglang into $venv (once, ~400 MB)" >&2
            "$PYTHON" -m venv "$venv" >&2
            "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
                'ziglang>=0.13,<0.18' >&2
        fi
        echo "$venv/bin/python -m ziglang"
    fi
}

RUNTIME_PY="$(find_python "$LAMBDA_PYTHON" || true)" # the runtime's minor (3.12 by default)
OUT="${GIVEN_OUT:-dist/metrics-agg-layer-$ARCH.zip}"
DEPLOY_ZIP="dist/metrics-agg-layer.zip"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/metrics-agg-layer.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
LAYER="$WORK/layer/python"
mkdir -p "$LAYER" "$WORK/bin" "$WORK/wheels" dist "$(dirname "$OUT")"

MATURIN_ARGS=(build --release --strip --quiet --target "$TARGET" --auditwheel check
    --out "$WORK/wheels" --interpreter "$PYTHON")
if [ -n "$GIVEN_WHEEL" ]; then
    echo "build_layer: [1/4] wheel given: $(basename "$GIVEN_WHEEL")"
    cp "$GIVEN_WHEEL" "$WORK/wheels/"
elif [ "$USE_ZIG" = 1 ]; then
    # maturin runs `zig`: a wrapper on PATH points it at the one found above.
    printf '#!/bin/sh\nexec %s "$@"\n' "$(find_zig)" >"$WORK/bin/zig"
    chmod +x "$WORK/bin/zig"
    export PATH="$WORK/bin:$PATH"
    MATURIN_ARGS+=(--zig --compatibility manylinux2014)
    echo "build_layer: [1/4] wheel ($TARGET, manylinux2014, zig $(zig version), release)"
else
    echo "build_layer: [1/4] wheel ($TARGET, native linker, lowest manylinux tag, release)"
fi
[ -n "$GIVEN_WHEEL" ] || "$MATURIN" "${MATURIN_ARGS[@]}"
WHEEL="$(find "$WORK/wheels" -name 'metrics_agg-*.whl' | head -n 1)"
[ -n "$WHEEL" ] || die "maturin produced no wheel"
WHEEL_NAME="$(basename "$WHEEL")"
case "$WHEEL_NAME" in
    *-cp311-abi3-*manylinux_2_*_"$MACHINE".whl) ;;
    *) die "unexpected wheel tags: $WHEEL_NAME (want cp311-abi3-manylinux_2_*_$MACHINE)" ;;
esac
GLIBC_MINOR="$(echo "$WHEEL_NAME" | sed -n "s/.*manylinux_2_\([0-9]*\)_$MACHINE\.whl$/\1/p")"
[ "${GLIBC_MINOR:-99}" -le 34 ] \
    || die "$WHEEL_NAME needs glibc 2.$GLIBC_MINOR: newer than Amazon Linux 2023's 2.34"
echo "build_layer:       $WHEEL_NAME"
if [ -z "$GIVEN_WHEEL" ]; then
    mkdir -p dist/wheels && cp "$WHEEL" dist/wheels/ # for --wheel (other runtimes, same build)
fi
if "$PYTHON" -m auditwheel --version >/dev/null 2>&1; then
    "$PYTHON" -m auditwheel show "$WHEEL" >"$WORK/auditwheel.txt"
    grep -q "manylinux_2_${GLIBC_MINOR}_$MACHINE" "$WORK/auditwheel.txt" \
        || die "auditwheel disagrees with the wheel's tag: $(cat "$WORK/auditwheel.txt")"
    echo "build_layer:       auditwheel show: consistent with manylinux_2_${GLIBC_MINOR}_$MACHINE"
fi

echo "build_layer: [2/4] install into python/ (CPython $LAMBDA_PYTHON, $MACHINE)"
# The wheel's own requirements, minus what the Lambda runtime provides (see the header).
"$PYTHON" - "$WHEEL" >"$WORK/requirements.txt" <<'EOF'
import re
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as wheel:
    meta = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    for line in wheel.read(meta).decode().splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        req = line.split(":", 1)[1].strip()
        name = re.split(r"[\s<>=!~;\[(]", req, maxsplit=1)[0].lower()
        if "extra ==" in req or name in {"botocore", "boto3"}:
            continue
        print(req)
EOF
echo 'urllib3>=2,!=2.2.0,<3' >>"$WORK/requirements.txt"
PIP_ARGS=(install --quiet --disable-pip-version-check --root-user-action=ignore --no-compile
    --target "$LAYER"
    --only-binary=:all: --platform "manylinux2014_$MACHINE"
    --platform "manylinux_2_${GLIBC_MINOR}_$MACHINE"
    --python-version "$LAMBDA_PYTHON" --implementation cp --abi "cp${LAMBDA_PYTHON/./}")
"$PYTHON" -m pip "${PIP_ARGS[@]}" --no-deps "$WHEEL"
rm -rf "${LAYER:?}/bin" # console scripts: no use in a layer
# The local tooling (server, demo, CLI, rendering; `python -m metrics_agg`; the code
# generator) is never run by the Lambda: the runtime never imports it (a test checks).
for tooling in $LOCAL_TOOLING; do
    rm -rf "${LAYER:?}/$tooling"
done
"$PYTHON" -m pip "${PIP_ARGS[@]}" -r "$WORK/requirements.txt"
for provided in botocore boto3; do
    [ ! -e "$LAYER/$provided" ] || die "$provided ended up in the layer (a dependency pulled it)"
done
[ -n "$(find "$LAYER/metrics_agg" -maxdepth 1 -name '_rust_counter*.so')" ] \
    || die "the compiled counter is missing from the layer"

echo "build_layer: [3/4] strip and precompile"
rm -rf "${LAYER:?}/bin"
find "$LAYER" -depth -type d \( -name __pycache__ -o -name tests -o -name test \) \
    -exec rm -rf {} +
# Install records, and maturin's SBOM (it carries a fresh serial number and time each build).
find "$LAYER" -path '*.dist-info/*' \( -name RECORD -o -name INSTALLER -o -name REQUESTED \
    -o -name direct_url.json \) -delete
find "$LAYER" -depth -path '*.dist-info/sboms' -exec rm -rf {} +
if [ -n "$RUNTIME_PY" ]; then
    # Paths as Lambda mounts the layer (tracebacks, and a zip that does not vary with $WORK).
    "$RUNTIME_PY" -m compileall -q -j 0 --invalidation-mode unchecked-hash \
        -s "$LAYER" -p /opt/python "$LAYER" >/dev/null
else
    echo "build_layer: WARNING: no python$LAMBDA_PYTHON found, so no precompiled .pyc (slower cold start)" >&2
fi

echo "build_layer: [4/4] check and zip"
if [ "$ARCH" = x86_64 ] && [ -n "$RUNTIME_PY" ]; then
    # Isolated (-I -S): only the layer and the standard library.
    (cd "$WORK" && "$RUNTIME_PY" -I -S -c '
import sys
sys.path.insert(0, "layer/python")
import metrics_agg, metrics_agg.aggregator.pipeline, metrics_agg.aggregator.lambda_support
assert metrics_agg.counter_backend() == "rust", metrics_agg.counter_backend()
print("build_layer:       import check: runtime imports, counter backend is rust")')
fi
find "$WORK/layer" -exec touch -h -d '2000-01-01T00:00:00Z' {} +
rm -f "$OUT"
(cd "$WORK/layer" && find python -print | LC_ALL=C sort | zip -q -X -D -9 -@ "$WORK/layer.zip")
mv "$WORK/layer.zip" "$OUT"

ZIPPED=$(stat -c %s "$OUT")
UNZIPPED=$(find "$LAYER" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
FILES=$(find "$LAYER" -type f | wc -l)
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1048576 }'; }
echo "build_layer: $OUT: $(mb "$ZIPPED") zipped, $(mb "$UNZIPPED") unzipped, $FILES files"
echo "build_layer: contents: $(find "$LAYER" -maxdepth 1 -name '*.dist-info' -printf '%f\n' \
    | sed 's/\.dist-info$//' | LC_ALL=C sort | tr '\n' ' ')"
[ "$ZIPPED" -le "$MAX_ZIPPED" ] || die "the layer is $(mb "$ZIPPED") zipped: over the 50 MB bar"
[ "$UNZIPPED" -le "$MAX_UNZIPPED" ] || die "the layer is $(mb "$UNZIPPED") unzipped: over 250 MB"
if [ -n "$GIVEN_OUT" ]; then
    echo "build_layer: $DEPLOY_ZIP left as it was (--out); this layer is for python$LAMBDA_PYTHON"
    exit 0
fi
cp "$OUT" "$DEPLOY_ZIP"
echo "build_layer: $DEPLOY_ZIP (what template.yaml deploys) is now $ARCH: deploy with Architecture=$ARCH"
