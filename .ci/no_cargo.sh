#!/usr/bin/env bash
# The quick start on a machine without cargo, for real: the repository's files copied to a
# temporary folder, scripts/bootstrap.sh run with every folder holding cargo, rustc or rustup
# taken off PATH. It must install the pure-Python counter, compile nothing (no target/, no
# extension) and download no Rust toolchain (maturin is never run), and the demo must pass.
set -euo pipefail
cd "$(dirname "$0")/.."
# The clone's own code and nothing else: no PYTHONPATH, no backend forced.
unset PYTHONPATH METRICS_AGG_COUNTER
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
clone="$work/metrics-agg"
mkdir "$clone"
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$clone"

path=""
IFS=: read -ra dirs <<<"$PATH"
for dir in "${dirs[@]}"; do
    if [ -x "$dir/cargo" ] || [ -x "$dir/rustc" ] || [ -x "$dir/rustup" ]; then continue; fi
    path="${path:+$path:}$dir"
done
if ! PATH="$path" command -v python3 >/dev/null 2>&1; then
    echo "no_cargo: python3 shares a folder with cargo; cannot hide cargo here" >&2
    exit 1
fi

started=$SECONDS
out="$(cd "$clone" && PATH="$path" CARGO_HOME="$work/no-cargo-home" RUSTUP_HOME="$work/no-rustup-home" \
    bash scripts/bootstrap.sh 2>&1)"
echo "$out"
grep -q "counter backend = python" <<<"$out" || { echo "no_cargo: not the pure-Python counter" >&2; exit 1; }
if [ -e "$clone/target" ] || compgen -G "$clone/python/metrics_agg/_rust_counter*.so" >/dev/null \
    || [ -e "$work/no-rustup-home" ] || [ -e "$work/no-cargo-home" ]; then
    echo "no_cargo: something was compiled or a Rust toolchain was installed" >&2
    exit 1
fi
(cd "$clone" && PATH="$path" .venv/bin/metrics-agg demo >"$work/demo.log" 2>&1) \
    || { cat "$work/demo.log"; echo "no_cargo: the demo failed" >&2; exit 1; }
tail -n 1 "$work/demo.log"
echo "no_cargo: setup and demo in $((SECONDS - started)) s, .venv $(du -sh "$clone/.venv" | cut -f1)"
