#!/bin/sh
# What routing costs, and that it does not grow with the number of routes:
# server CPU per request of bench/router.lua with 10 and with 1,000 routes
# (ROUTES), next to bench/hello.lua (no router) as the floor, in one run.
#
#   sh bench/router.sh [rounds] [seconds]        (defaults: 5 rounds of 5 s)
#
# A bigger router is also more memory, and a bigger heap costs every
# request a little (the garbage collector's work comes in bigger, less
# cache-friendly batches), routes or not.  So for each bigger count C the
# run has a control: the smallest count's router plus C minus that many
# routes in a second router that no request reaches (IDLE_ROUTES), the
# same memory with the smallest router's matching.  C routes against the
# control is what matching among C routes costs; C routes against the
# smallest count is everything, memory included.
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
# run, then per server the req/s and server CPU per request over all
# rounds, and the ratios of CPU per request (pooled over the rounds, and
# the median of the rounds' own ratios).  Installs Debian's wrk if it is
# missing (as root).
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
MIN=
for c in $COUNTS; do
  case $c in ''|*[!0-9]*|0) echo "$me: COUNTS must hold positive integers, got '$c'" >&2; exit 1 ;; esac
  if [ -z "$MIN" ] || [ "$c" -lt "$MIN" ]; then MIN=$c; fi
done

TMP=$(mktemp -d)
PIDS=""
cleanup() {
  for p in $PIDS; do kill "$p" 2>/dev/null || true; done
  for p in $PIDS; do wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

# start NAME LABEL APP [ROUTES [IDLE_ROUTES]]: starts a server on a free
# port; sets PORT_NAME, PID_NAME, GROUP_NAME (the last route group, which
# wrk requests) and LABEL_NAME.
start() {
  routes=${4:-$MIN}
  ROUTES=$routes IDLE_ROUTES=${5:-0} taskset -c "$SERVER_CPU" "$BIN" --listen 127.0.0.1:0 "$3" \
    >"$TMP/$1.out" 2>"$TMP/$1.err" &
  pid=$!
  PIDS="$PIDS $pid"
  i=0
  until grep -q '^listening on' "$TMP/$1.out" 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt 200 ] || { echo "$me: $3 did not start: $(cat "$TMP/$1.err")" >&2; exit 1; }
    sleep 0.05
  done
  port=$(sed -n 's/^listening on http:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$TMP/$1.out")
  eval "PORT_$1=$port; PID_$1=$pid; GROUP_$1=$(( (routes + 9) / 10 ))"
  echo "$1 $2" >>"$TMP/labels"
  NAMES="$NAMES $1"
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
NAMES=""
start hello "hello (no router)" bench/hello.lua
start "r$MIN" "$MIN routes" bench/router.lua "$MIN"
for c in $COUNTS; do
  [ "$c" != "$MIN" ] || continue
  start "c$c" "$MIN routes + $((c - MIN)) idle" bench/router.lua "$MIN" "$((c - MIN))"
  start "r$c" "$c routes" bench/router.lua "$c"
done

# every route wrk asks for answers 200 before anything is measured
for name in $NAMES; do
  eval "port=\$PORT_$name; group=\$GROUP_$name"
  for path in "/r$group/items/42" "/r$group/users/ann/posts/7" "/r$group/files/css/site.css" \
              "/r$group/about"; do
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
  set -- $order                     # rotate: the first goes last
  first=$1; shift
  order="$* $first"
  r=$((r + 1))
done

# ratio A B: "A / B" of CPU per request, pooled and as the median of the
# rounds' ratios (each round runs every server), which a disturbed run
# moves less.
awk -v hz="$TCK" -v secs="$SECS" -v names="$NAMES" -v min="$MIN" -v counts="$COUNTS" '
  FILENAME ~ /labels$/ { sub(/^[^ ]* /, "", $0); label[FNR] = $0; next }
  { t[$2] += $3; q[$2] += $4; per[$1, $2] = $3 / $4; if ($1 > n) n = $1 }
  function ratio(a, b, what,   r, x, i, j, y, med, pooled) {
    for (r = 1; r <= n; r++) x[r] = per[r, a] / per[r, b]
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (x[j] < x[i]) { y = x[i]; x[i] = x[j]; x[j] = y }
    med = (n % 2) ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2
    pooled = (t[a] / q[a]) / (t[b] / q[b])
    printf "%s: %.3f pooled (%+.1f%%), %.3f median of %d rounds (%+.1f%%)\n",
      what, pooled, (pooled - 1) * 100, med, n, (med - 1) * 100
  }
  END {
    k = split(names, nm, " ")
    for (i = 1; i <= k; i++) {
      s = nm[i]
      printf "%-26s %9.1f req/s  %7.3f us server CPU per request  (%d requests)\n",
        label[i], q[s] / (n * secs), t[s] / hz * 1e6 / q[s], q[s]
    }
    m = split(counts, cs, " ")
    for (i = 1; i <= m; i++) {
      c = cs[i]
      if (c == min) continue
      ratio("r" c, "r" min, c " routes / " min " routes, CPU per request (memory and matching)")
      ratio("r" c, "c" c, c " routes / " min " routes + " (c - min) " idle (matching alone)")
    }
  }' "$TMP/labels" "$TMP/runs"
