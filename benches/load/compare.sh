#!/usr/bin/env bash
# wasmswap-host beside `wasmtime serve` (wasmtime-cli 48) on the same
# wasi-http guest, one after the other, with the same load generator (oha),
# connections and duration; then the same load on wasmswap-host while its
# route is swapped and rolled back every few milliseconds.
#
#   bash benches/load/compare.sh            # DURATION=15s CONNS=32 by default
#   HOST_ARGS="--config my.toml" bash benches/load/compare.sh   # other host settings
#
# Installs oha and wasmtime-cli 48.0.8 from crates.io when missing (the
# wasmtime build takes ~10 minutes on 2 cores). Prints one Markdown table.
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-15s}
CONNS=${CONNS:-32}
TOKEN=bench-token-0123456789abcdef
PATH="$HOME/.cargo/bin:$PATH"

command -v oha >/dev/null || (cd /tmp && cargo +1.95.0 install oha --locked)
if ! wasmtime --version 2>/dev/null | grep -q '^wasmtime 48\.'; then
  (cd /tmp && cargo +1.95.0 install wasmtime-cli --version 48.0.8 --locked)
fi

cargo build --release -p wasmswap-host -p test-programs
guest=$(ls target/guests/wasm32-wasip2/release/http_hello.wasm)
guest2=$(ls target/guests/wasm32-wasip2/release/http_hello_v2.wasm)
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
cp "$guest" "$work/v1.wasm"
cp "$guest2" "$work/v2.wasm"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 1 300); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "not up: $1" >&2; exit 1; }
load() { oha -z "$DURATION" -c "$CONNS" --no-tui --output-format json "$1" > "$2"; }

# 1. wasmtime serve (`-S cli`: Rust guests import wasi:cli, as DESIGN.md notes).
p1=$(port)
wasmtime serve -S cli --addr "127.0.0.1:$p1" "$work/v1.wasm" >/dev/null 2>&1 & pids+=($!)
wait_up "http://127.0.0.1:$p1/"
load "http://127.0.0.1:$p1/" "$work/wasmtime.json"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

# 2. wasmswap-host, standalone, the same guest.
p2=$(port); pa=$(port); pf=$(port)
target/release/wasmswap-host --service "hello=$work/v1.wasm" --listen "127.0.0.1:$p2" \
  --agent-listen "127.0.0.1:$pa" --agent-token "$TOKEN" ${HOST_ARGS:-} >/dev/null 2>&1 & pids+=($!)
wait_up "http://127.0.0.1:$p2/hello/"
load "http://127.0.0.1:$p2/hello/" "$work/wasmswap.json"

# 3. The same load while the route flips between v1 and v2 and back.
python3 -m http.server --bind 127.0.0.1 "$pf" --directory "$work" >/dev/null 2>&1 & pids+=($!)
wait_up "http://127.0.0.1:$pf/v2.wasm"
sha=$(sha256sum "$work/v2.wasm" | cut -d' ' -f1)
curl -fsS -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d "{\"service\":\"hello\",\"version\":\"b2\",\"sha256\":\"$sha\",\"url\":\"http://127.0.0.1:$pf/v2.wasm\"}" \
  "http://127.0.0.1:$pa/v1/versions" >/dev/null
load "http://127.0.0.1:$p2/hello/" "$work/swap.json" &
loadpid=$!
swaps=0
while kill -0 "$loadpid" 2>/dev/null; do
  curl -fsS -X PUT -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d '{"stable":"b2"}' "http://127.0.0.1:$pa/v1/services/hello/route" >/dev/null
  curl -fsS -X POST -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$pa/v1/services/hello/rollback" >/dev/null
  swaps=$((swaps + 2))
  sleep 0.005
done
wait "$loadpid"

python3 - "$work" "$swaps" "$DURATION" "$CONNS" <<'PY'
import json, sys
work, swaps, duration, conns = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def read(name):
    d = json.load(open(f"{work}/{name}.json"))
    s = d["summary"]
    codes = d.get("statusCodeDistribution", {})
    ok = sum(n for c, n in codes.items() if c.startswith("2"))
    non2xx = sum(n for c, n in codes.items() if not c.startswith("2"))
    # Requests cut off when the run's time is up are not failures.
    errors = sum(n for e, n in d.get("errorDistribution", {}).items() if "aborted due to deadline" not in e)
    p = d["latencyPercentiles"]
    return dict(rps=s["requestsPerSec"], p50=p["p50"] * 1e3, p99=p["p99"] * 1e3, ok=ok, non2xx=non2xx, errors=errors)
wt, ws, sw = read("wasmtime"), read("wasmswap"), read("swap")
print(f"oha -z {duration} -c {conns}, one after the other on this machine\n")
print("| server | req/s | p50 ms | p99 ms | 2xx | non-2xx | errors |")
print("|---|---:|---:|---:|---:|---:|---:|")
for name, r in [("wasmtime serve 48", wt), ("wasmswap-host", ws), (f"wasmswap-host, {swaps} route changes during the run", sw)]:
    print(f"| {name} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['ok']} | {r['non2xx']} | {r['errors']} |")
print(f"\nwasmswap-host / wasmtime serve: {ws['rps'] / wt['rps']:.2f}x req/s, p99 {ws['p99'] / wt['p99']:.2f}x")
PY
