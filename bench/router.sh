#!/bin/sh
# What routing costs, and that it does not grow with the number of routes:
# server CPU per request of bench/router.lua with 10 and with 1,000 routes
# (ROUTES), next to bench/hello.lua (no router) as the floor, in one run.
#
#   sh bench/router.sh [rounds] [seconds]        (defaults: 5 rounds of 5 s)
#
# The servers run at once, pinned to CPU 0; wrk runs pinned to CPU 1
# (wrk -t1 -c50, bench/router_wrk.lua: four GETs in turn, of the last route
# group: a constrained parameter, two parameters, a wildcard, a static
# path) against each in turn, after a warm-up of each, for several rounds
# with the order rotating, so drift in the machine hits all alike.  Server
# CPU is utime+stime from /proc/PID/stat read before and after each run;
# the request count is wrk's.
#
# COUNTS ("10 1000") sets the route counts compared.  Prints one line per
# run, then per server the req/s and server CPU per request over all rounds
# and the ratio of each route count's CPU per request to the smallest
# count's (pooled, and the median of the rounds' ratios).  Installs Debian's
# wrk if it is missing (as root).
set -eu

ROUNDS=${1:-5}
SECS=${2:-5}
BIN=${OWINLUA_BIN:-./owinlua}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
COUNTS=${COUNTS:-10 1000}
me=bench/router.sh

cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y wrk >/dev/null
  else
    echo "$me: wrk is missing (Debian: apt install wrk)" >&2
    exit 1
  fi
fi
[ -x "$BIN" ] || { echo "$me: no $BIN (run make)" >&2; exit 1; }
for c in $COUNTS; do
  case $c in ''|*[!0-9]*) echo "$me: COUNTS must hold positive integers, got '$c'" >&2; exit 1 ;; esac
done

TMP=$(mktemp -d)
PIDS=""
cleanup() {
  for p in $PIDS; do kill "$p" 2>/dev/null || true; done
  for p in $PIDS; do wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

# start NAME APP [ROUTES]: starts a server on a free port; sets PORT_NAME,
# PID_NAME and GROUP_NAME (the last route group, which wrk requests).
start() {
  ROUTES=${3:-10} taskset -c "$SERVER_CPU" "$BIN" --listen 127.0.0.1:0 "$2" >"$TMP/$1.out" 2>"$TMP/$1.err" &
  pid=$!
  PIDS="$PIDS $pid"
  i=0
  until grep -q '^listening on' "$TMP/$1.out" 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt 100 ] || { echo "$me: $2 did not start: $(cat "$TMP/$1.err")" >&2; exit 1; }
    sleep 0.05
  done
  port=$(sed -n 's/^listening on http:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$TMP/$1.out")
  eval "PORT_$1=$port; PID_$1=$pid; GROUP_$1=$(( (${3:-10} + 9) / 10 ))"
}

# cpu PID: utime+stime in clock ticks (fields 14 and 15 of /proc/PID/stat;
# the command name in field 2 may hold spaces, so count after its ')').
cpu() {
  sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# run NAME SECS: one wrk run; prints "ticks requests".
run() {
  eval "port=\$PORT_$1; pid=\$PID_$1; group=\$GROUP_$1"
  c0=$(cpu "$pid")
  out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c50 -d"${2}s" -s bench/router_wrk.lua \
    "http://127.0.0.1:$port/" -- "$group" 2>&1)
  c1=$(cpu "$pid")
  reqs=$(printf '%s\n' "$out" | awk '/requests in/ { print $1 }')
  errs=$(printf '%s\n' "$out" | awk '/Non-2xx|Socket errors/ { print }')
  [ -z "$errs" ] || { echo "$me: wrk reported errors for $1: $errs" >&2; exit 1; }
  [ -n "$reqs" ] || { echo "$me: no result from wrk for $1: $out" >&2; exit 1; }
  echo "$((c1 - c0)) $reqs"
}

TCK=$(getconf CLK_TCK)
NAMES="hello"
start hello bench/hello.lua
for c in $COUNTS; do
  start "r$c" bench/router.lua "$c"
  NAMES="$NAMES r$c"
done

# every route wrk asks for answers 200 before anything is measured
for name in $NAMES; do
  eval "port=\$PORT_$name; group=\$GROUP_$name"
  for path in "/r$group/items/42" "/r$group/users/ann/posts/7" "/r$group/files/css/site.css" "/r$group/about"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port$path" 2>/dev/null || echo none)
    [ "$code" = 200 ] || { echo "$me: $name answered $code for $path" >&2; exit 1; }
  done
done

echo "server on CPU $SERVER_CPU, wrk -t1 -c50 -d${SECS}s on CPU $CLIENT_CPU, $ROUNDS rounds, CLK_TCK=$TCK"
for name in $NAMES; do run "$name" 2 >/dev/null; done     # warm-up

r=1
order=$NAMES
while [ $r -le "$ROUNDS" ]; do
  for name in $order; do
    set -- $(run "$name" "$SECS")
    echo "$r $name $1 $2" >>"$TMP/runs"
    awk -v n="$name" -v r="$r" -v t="$1" -v q="$2" -v hz="$TCK" -v s="$SECS" 'BEGIN {
      printf "round %d %-8s %8d requests  %8.1f req/s  %6.3f us CPU/request  (CPU %3.0f%%)\n",
        r, n, q, q / s, t / hz * 1e6 / q, t / hz / s * 100 }'
  done
  # rotate the order: the first goes last
  set -- $order
  first=$1; shift
  order="$* $first"
  r=$((r + 1))
done

# Pooled: all ticks over all requests, per server.  Median: of the rounds'
# ratios to the smallest route count (each round runs every server), which
# a disturbed run moves less.
base="r$(echo $COUNTS | awk '{ m = $1; for (i = 2; i <= NF; i++) if ($i < m) m = $i; print m }')"
awk -v hz="$TCK" -v secs="$SECS" -v names="$NAMES" -v base="$base" '
  { t[$2] += $3; q[$2] += $4; per[$1, $2] = $3 / $4; if ($1 > n) n = $1 }
  END {
    k = split(names, nm, " ")
    for (i = 1; i <= k; i++) {
      s = nm[i]; us = t[s] / hz * 1e6 / q[s]
      label = (s == "hello") ? "hello (no router)" : (substr(s, 2) " routes")
      printf "%-18s %10.1f req/s  %7.3f us server CPU per request  (%d requests)\n",
        label, q[s] / (n * secs), us, q[s]
    }
    b = t[base] / q[base]
    for (i = 1; i <= k; i++) {
      s = nm[i]
      if (s == "hello" || s == base) continue
      for (r = 1; r <= n; r++) x[r] = per[r, s] / per[r, base]
      for (a = 1; a <= n; a++) for (c = a + 1; c <= n; c++) if (x[c] < x[a]) { y = x[a]; x[a] = x[c]; x[c] = y }
      med = (n % 2) ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2
      printf "%s routes / %s routes, CPU per request: %.3f pooled (%+.1f%%), %.3f median of %d rounds (%+.1f%%)\n",
        substr(s, 2), substr(base, 2), (t[s] / q[s]) / b, ((t[s] / q[s]) / b - 1) * 100, med, n, (med - 1) * 100
    }
  }' "$TMP/runs"
