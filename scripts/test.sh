#!/usr/bin/env bash
# The whole test suite — the README's test command, and what CI (.ci/run) runs.
# Installs nothing globally: the Python peers (numpy, msgpack, and the real hypha-rpc client and
# hypha server for the legacy-mode interop tests) go into a venv, .venv ($RHIZOMORPH_VENV);
# needs a Rust toolchain (cargo), python3 and PyPI, and installs the Debian package redis-server
# if it is missing (the cluster tests start their own servers on free ports).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "format"
cargo fmt --all -- --check

step "Python peers into the venv: numpy, msgpack, hypha-rpc, hypha (from PyPI)"
venv=${RHIZOMORPH_VENV:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
export RHIZOMORPH_VENV=$(cd "$venv" && pwd)
# hypha needs aiobotocore to start and sqlmodel 0.0.27; the versions the interop tests were
# written against (../shared/reference/hypha-rpc-wire.md) are pinned.
"$venv/bin/pip" install --quiet --disable-pip-version-check numpy msgpack \
  hypha-rpc==0.21.47 hypha==0.21.137 aiobotocore sqlmodel==0.0.27

step "redis-server for the cluster tests (Debian package; installed if missing)"
if ! command -v redis-server >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  # The package starts a system-wide server on 6379; the tests start their own on free ports.
  $sudo service redis-server stop >/dev/null 2>&1 || true
fi
redis-server --version

step "spec vectors are up to date with their generators (spec/vectors/make_*.py)"
tmp=$(mktemp -d)
cp spec/vectors/frames.json "$tmp/frames.json"
cp spec/vectors/headers.json "$tmp/headers.json"
cp spec/vectors/payloads.json "$tmp/payloads.json"
cp spec/vectors/legacy.json "$tmp/legacy.json"
cp spec/vectors/exchanges.json "$tmp/exchanges.json"
cp spec/vectors/sessions.json "$tmp/sessions.json"
python3 spec/vectors/make_vectors.py >/dev/null
python3 spec/vectors/make_header_vectors.py >/dev/null
python3 spec/vectors/make_payload_vectors.py >/dev/null
python3 spec/vectors/make_exchange_vectors.py >/dev/null
python3 spec/vectors/make_session_vectors.py >/dev/null
"$venv/bin/python" spec/vectors/make_legacy_vectors.py >/dev/null
for f in frames headers payloads legacy exchanges sessions; do
  if ! cmp -s "spec/vectors/$f.json" "$tmp/$f.json"; then
    cp "$tmp/$f.json" "spec/vectors/$f.json"
    echo "spec/vectors/$f.json differs from what its generator writes: regenerate and commit" >&2
    exit 1
  fi
done

step "a Python peer reads the typed-array vectors with numpy (wire.md §11.4)"
"$venv/bin/python" spec/vectors/check_numpy.py

step "the layers hold: the sans-IO crate links no I/O crate, the library no CLI or bench crate"
./scripts/check_layers.sh
python3 scripts/spec_rules.py

step "docs build without a warning or a broken link"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

step "clippy (warnings are errors)"
cargo clippy --release --workspace --all-targets -- -D warnings

step "tests: unit, vectors, properties, allocation bounds, fuzz regressions, doc examples,"
echo "   legacy interop with a real hypha server and real hypha-rpc clients"
cargo test --release --workspace

step "benchmarks and fuzz targets still build"
cargo bench --workspace --no-run --quiet
cargo check --quiet --manifest-path fuzz/Cargo.toml

step "the README commands run (bench at a tenth of its size)"
cargo run --release --quiet -- inspect >/dev/null
cargo run --release --quiet -- bench --quiet --scale 0.1 --hol-seconds 1 --stall-seconds 0.5 --stall-mib 16 --rpc-seconds 0.3 >/dev/null
echo "all checks passed"
