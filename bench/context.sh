#!/bin/sh
# The context adapter's cost over the raw env: server CPU per request of
# apps/hello.lua (raw env) and apps/context.lua (the same app through
# owin.context), measured as PERFORMANCE.md says.
#
#   sh bench/context.sh [rounds] [seconds]        (defaults: 5 rounds of 5 s)
#
# Both servers run at once, pinned to CPU 0; wrk runs pinned to CPU 1
# (wrk -t1 -c50) against each in turn, after a warm-up of each, for several
# interleaved rounds (hello, context, context, hello, ...), so drift in the
# machine hits both alike.  Server CPU is utime+stime from /proc/PID/stat
# read before and after each run; the request count is wrk's.  Logs (one
# line a request, in both apps) go to /dev/null.
#
# HELLO_APP and CONTEXT_APP replace the two apps (to compare variants).
# Prints one line per run, then the CPU per request of each app over all
# rounds, and the overhead (context/hello), pooled and as the median of the
# rounds' ratios.  Installs Debian's wrk if it is missing (as root).
set -eu

ROUNDS=${1:-5}
SECS=${2:-5}
BIN=${OWINLUA_BIN:-./owinlua}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y wrk >/dev/null
  else
    echo "bench/context.sh: wrk is missing (Debian: apt install wrk)" >&2
    exit 1
  fi
fi
[ -x "$BIN" ] || { echo "bench/context.sh: no $BIN (run make)" >&2; exit 1; }

TMP=$(mktemp -d)
PIDS=""
cleanup() {
  for p in $PIDS; do kill "$p" 2>/dev/null || true; done
  for p in $PIDS; do wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

# start NAME APP: starts a server on a free port; sets PORT_NAME and PID_NAME.
start() {
  taskset -c "$SERVER_CPU" "$BIN" --listen 127.0.0.1:0 "$2" >"$TMP/$1.out" 2>/dev/null &
  pid=$!
  PIDS="$PIDS $pid"
  i=0
  until grep -q '^listening on' "$TMP/$1.out" 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt 100 ] || { echo "bench/context.sh: $2 did not start" >&2; exit 1; }
    sleep 0.05
  done
  port=$(sed -n 's/^listening on http:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$TMP/$1.out")
  eval "PORT_$1=$port; PID_$1=$pid"
}

# cpu PID: utime+stime in clock ticks (fields 14 and 15 of /proc/PID/stat;
# the command name in field 2 may hold spaces, so count after its ')').
cpu() {
  sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# run NAME SECS: one wrk run; prints "ticks requests".
run() {
  eval "port=\$PORT_$1; pid=\$PID_$1"
  c0=$(cpu "$pid")
  out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c50 -d"${2}s" "http://127.0.0.1:$port/" 2>&1)
  c1=$(cpu "$pid")
  reqs=$(printf '%s\n' "$out" | awk '/requests in/ { print $1 }')
  errs=$(printf '%s\n' "$out" | awk '/Non-2xx|Socket errors/ { print }')
  [ -z "$errs" ] || { echo "bench/context.sh: wrk reported errors for $1: $errs" >&2; exit 1; }
  echo "$((c1 - c0)) $reqs"
}

TCK=$(getconf CLK_TCK)
start hello "${HELLO_APP:-apps/hello.lua}"
start context "${CONTEXT_APP:-apps/context.lua}"

echo "server on CPU $SERVER_CPU, wrk -t1 -c50 -d${SECS}s on CPU $CLIENT_CPU, $ROUNDS rounds, CLK_TCK=$TCK"
run hello 2 >/dev/null          # warm-up
run context 2 >/dev/null

r=1
while [ $r -le "$ROUNDS" ]; do
  if [ $((r % 2)) -eq 1 ]; then order="hello context"; else order="context hello"; fi
  for name in $order; do
    set -- $(run "$name" "$SECS")
    echo "$r $name $1 $2" >>"$TMP/runs"
    awk -v n="$name" -v r="$r" -v t="$1" -v q="$2" -v hz="$TCK" -v s="$SECS" 'BEGIN {
      printf "round %d %-8s %8d requests  %8.1f req/s  %6.3f us CPU/request  (CPU %3.0f%%)\n",
        r, n, q, q / s, t / hz * 1e6 / q, t / hz / s * 100 }'
  done
  r=$((r + 1))
done

# Pooled: all ticks over all requests, per app.  Median: of the rounds'
# ratios (each round runs both apps back to back), which a disturbed run
# moves less.
awk -v hz="$TCK" '
  { t[$2] += $3; q[$2] += $4; per[$1, $2] = $3 / $4; if ($1 > n) n = $1 }
  END {
    h = t["hello"] / hz * 1e6 / q["hello"]; c = t["context"] / hz * 1e6 / q["context"]
    for (r = 1; r <= n; r++) x[r] = per[r, "context"] / per[r, "hello"]
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (x[j] < x[i]) { y = x[i]; x[i] = x[j]; x[j] = y }
    med = (n % 2) ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2
    printf "hello    (raw env):       %.3f us server CPU per request (%d requests)\n", h, q["hello"]
    printf "context  (owin.context):  %.3f us server CPU per request (%d requests)\n", c, q["context"]
    printf "overhead: %.3f pooled (%+.1f%%), %.3f median of %d rounds (%+.1f%%)\n",
      c / h, (c / h - 1) * 100, med, n, (med - 1) * 100 }' "$TMP/runs"
