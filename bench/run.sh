#!/usr/bin/env bash
# bench/run.sh - mailcluster benchmark: one Dovecot backend, measured three ways
# in one run:
#
#   direct        imapload -> Dovecot 127.0.0.2:24300
#   haproxy       imapload -> haproxy (mode tcp) 127.0.0.1:24143 -> Dovecot
#   mailclusterd  imapload -> mailclusterd 127.0.0.1:24144 -> Dovecot
#
# For each: sessions/s (imapload session: connect, LOGIN, SELECT INBOX,
# FETCH 1:* FLAGS, LOGOUT), the relay's CPU per completed session
# (utime+stime+cutime+cstime over the relay's process tree, /proc/PID/stat)
# and the relay's RSS per idle logged-in connection (VmRSS summed over its
# process tree, before/after holding BENCH_IDLE connections).  Then LMTP
# delivery (bench/lmtpload.py: messages of ~2 KB to random users, each
# connection running transactions back to back) straight to Dovecot's LMTP
# (127.0.0.2:24320, lmtp_direct) and through mailclusterd's lmtp listener
# (127.0.0.1:24125, lmtp_mailclusterd): messages/s.  See bench/README.md.
#
# Environment (all optional):
#   BENCH_DIR=/tmp/mailcluster-bench  run directory (wiped first)
#   BENCH_SESSIONS=5000               sessions per target and round
#   BENCH_ROUNDS=3                    rounds (targets interleaved in each)
#   BENCH_CONCURRENCY=20              sessions in flight
#   BENCH_IDLE=2000                   idle connections held per relay
#   BENCH_WARMUP=300                  warm-up sessions per target (not counted)
#   BENCH_HAPROXY_THREADS=1           haproxy nbthread
#   BENCH_LMTP_MESSAGES=2000          LMTP messages per target and round (0: no LMTP rows)
#   BENCH_LMTP_ROUNDS=2               LMTP rounds (targets interleaved in each)
#   BENCH_LMTP_CONCURRENCY=4          LMTP connections
#   BENCH_LMTP_SIZE=2048              approximate message size, bytes
#   BENCH_MAILCLUSTERD, BENCH_MAILCLUSTER_CLI   other daemon / CLI binaries
#                                     (default build/mailclusterd, build/mailcluster)
#
# Exit status: 0 if every target ran without a failed session, 1 otherwise
# (including mailclusterd missing or not starting), 2 if the setup failed.
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
RUN=${BENCH_DIR:-/tmp/mailcluster-bench}
SESSIONS=${BENCH_SESSIONS:-5000}
CONC=${BENCH_CONCURRENCY:-20}
IDLE=${BENCH_IDLE:-2000}
WARMUP=${BENCH_WARMUP:-300}
ROUNDS=${BENCH_ROUNDS:-3}
HAPROXY_THREADS=${BENCH_HAPROXY_THREADS:-1}
LMTP_MESSAGES=${BENCH_LMTP_MESSAGES:-2000}
LMTP_ROUNDS=${BENCH_LMTP_ROUNDS:-2}
LMTP_CONC=${BENCH_LMTP_CONCURRENCY:-4}
LMTP_SIZE=${BENCH_LMTP_SIZE:-2048}

BACKEND_IP=127.0.0.2
BACKEND_PORT=24300
HAPROXY_PORT=24143
MCD_PORT=24144
ADMIN_PORT=24180
BACKEND_LMTP_PORT=24320
MCD_LMTP_PORT=24125
USERS=1-100
PASSWORD=password

IMAPLOAD=$ROOT/build/imapload
LMTPLOAD=$ROOT/bench/lmtpload.py
MCD=${BENCH_MAILCLUSTERD:-$ROOT/build/mailclusterd}
MCCLI=${BENCH_MAILCLUSTER_CLI:-$ROOT/build/mailcluster}

for v in SESSIONS CONC IDLE WARMUP ROUNDS HAPROXY_THREADS LMTP_MESSAGES LMTP_ROUNDS LMTP_CONC LMTP_SIZE; do
	if ! [[ ${!v} =~ ^[0-9]+$ ]]; then
		echo "bench: $v must be a non-negative integer (got '${!v}')" >&2
		exit 2
	fi
done
[ "$CONC" -ge 1 ] || CONC=1
[ "$SESSIONS" -ge 1 ] || SESSIONS=1
[ "$ROUNDS" -ge 1 ] || ROUNDS=1
[ "$HAPROXY_THREADS" -ge 1 ] || HAPROXY_THREADS=1
[ "$LMTP_ROUNDS" -ge 1 ] || LMTP_ROUNDS=1
[ "$LMTP_CONC" -ge 1 ] || LMTP_CONC=1
[ "$LMTP_SIZE" -ge 100 ] || LMTP_SIZE=100
case $RUN in
/ | /tmp | /tmp/ | "$ROOT" | "$HOME" | "") echo "bench: refusing BENCH_DIR=$RUN" >&2; exit 2 ;;
esac

if [ ! -x "$IMAPLOAD" ]; then
	echo "bench: $IMAPLOAD is missing - run make first (make build/imapload, or make all)" >&2
	exit 2
fi
for tool in haproxy python3 dovecot getconf; do
	if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
		echo "bench: $tool is not installed (make deps)" >&2
		exit 2
	fi
done
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
CLK_TCK=$(getconf CLK_TCK)

log() { printf '%s bench: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- processes

HAPROXY_PID=""
MCD_PID=""
IDLE_PID=""
BACKENDS_STARTED=0

stop_pid() { # stop_pid PID NAME: SIGTERM, wait up to 5 s, then SIGKILL
	local pid=$1 name=$2 i
	[ -n "$pid" ] || return 0
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null
	for i in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "$name (pid $pid) did not stop on SIGTERM, killing it"
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
	return 0
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_pid "$IDLE_PID" "imapload idle"
	stop_pid "$MCD_PID" mailclusterd
	stop_pid "$HAPROXY_PID" haproxy
	if [ "$BACKENDS_STARTED" = 1 ]; then
		python3 "$ROOT/scripts/backends.py" stop --dir "$RUN/backends" >&2 ||
			log "stopping the backend failed"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A previous run that was killed hard may have left its processes behind:
# stop those (only those whose command line names this run directory).
stop_stale() {
	local pidfile=$1 pid cmd
	[ -f "$pidfile" ] || return 0
	pid=$(cat "$pidfile" 2>/dev/null)
	[[ $pid =~ ^[0-9]+$ ]] || return 0
	cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 0
	case $cmd in
	*"$RUN/"*) log "stopping stale pid $pid from a previous run: $cmd"; kill -TERM "$pid" 2>/dev/null; sleep 1 ;;
	esac
}

port_open() { # port_open IP PORT: true if something accepts there
	timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

wait_port() { # wait_port IP PORT PID SECONDS
	local ip=$1 port=$2 pid=$3 secs=$4 end=$((SECONDS + $4))
	while [ $SECONDS -lt $end ]; do
		port_open "$ip" "$port" && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# tree_pids PID: the process and all its descendants
tree_pids() {
	ps -e -o pid=,ppid= | awk -v root="$1" '
		{ parent[$1] = $2 }
		END {
			in_tree[root] = 1; n = 1
			while (n > 0) {
				n = 0
				for (p in parent)
					if (!(p in in_tree) && (parent[p] in in_tree)) { in_tree[p] = 1; n++ }
			}
			for (p in in_tree) if (p in parent) print p
		}'
}

# cpu_ticks PID: utime+stime+cutime+cstime summed over the process tree
cpu_ticks() {
	local total=0 p f
	for p in $(tree_pids "$1"); do
		# fields after "(comm) ": state is $1, utime $12, stime $13, cutime $14, cstime $15
		f=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null) || continue
		total=$((total + $(awk '{print $12 + $13 + $14 + $15}' <<<"$f")))
	done
	echo "$total"
}

# rss_kb PID: VmRSS summed over the process tree
rss_kb() {
	local total=0 p v
	for p in $(tree_pids "$1"); do
		v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null)
		total=$((total + ${v:-0}))
	done
	echo "$total"
}

kv() { # kv KEY LINE
	sed -n "s/.*\<$1=\([^ ]*\).*/\1/p" <<<"$2"
}

# ---------------------------------------------------------------- setup

if [ -d "$RUN" ]; then
	[ -f "$RUN/backends/backends.json" ] &&
		python3 "$ROOT/scripts/backends.py" stop --dir "$RUN/backends" >/dev/null 2>&1
	stop_stale "$RUN/haproxy.pid"
	stop_stale "$RUN/mailclusterd.pid"
	rm -rf "$RUN"
fi
mkdir -p "$RUN" || exit 2

for p in "$BACKEND_IP:$BACKEND_PORT" "$BACKEND_IP:$BACKEND_LMTP_PORT" "127.0.0.1:$HAPROXY_PORT" \
	"127.0.0.1:$MCD_PORT" "127.0.0.1:$MCD_LMTP_PORT" "127.0.0.1:$ADMIN_PORT"; do
	if port_open "${p%:*}" "${p#*:}"; then
		echo "bench: $p is already in use by another process; stop it first" >&2
		exit 2
	fi
done

# imapload, haproxy and mailclusterd inherit this.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if [ "$NOFILE" != unlimited ] && [ "$NOFILE" -lt $((2 * IDLE + 200)) ]; then
	log "warning: open-file limit $NOFILE is low for $IDLE idle connections through a relay"
fi

T_START=$SECONDS
log "run dir $RUN; sessions=$SESSIONS x $ROUNDS rounds, concurrency=$CONC idle=$IDLE warmup=$WARMUP"

log "starting the Dovecot backend (scripts/backends.py)"
if [ ! -f "$ROOT/scripts/backends.py" ]; then
	echo "bench: scripts/backends.py is missing" >&2
	exit 2
fi
BACKENDS_STARTED=1
if ! python3 "$ROOT/scripts/backends.py" start --dir "$RUN/backends" --count 1 \
	--first-ip "$BACKEND_IP" --imap-port "$BACKEND_PORT" --pop3-port 24310 \
	--lmtp-port "$BACKEND_LMTP_PORT" --sieve-port 24340 --submission-port 24350 \
	--users 100 --messages 3 >"$RUN/backends.out" 2>&1; then
	cat "$RUN/backends.out" >&2
	echo "bench: the backend did not start" >&2
	exit 2
fi
sed 's/^/  /' "$RUN/backends.out" >&2

log "starting haproxy (mode tcp, nbthread $HAPROXY_THREADS) on 127.0.0.1:$HAPROXY_PORT"
cat >"$RUN/haproxy.cfg" <<EOF
# bench/run.sh: a bare TCP relay, the baseline for mailclusterd.
global
    maxconn 8000
    nbthread $HAPROXY_THREADS

defaults
    mode tcp
    maxconn 8000
    timeout connect 5s
    timeout client 10m
    timeout server 10m

frontend imap
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend dovecot

backend dovecot
    server backend1 $BACKEND_IP:$BACKEND_PORT
EOF
if ! "$HAPROXY" -c -q -f "$RUN/haproxy.cfg" >"$RUN/haproxy.check" 2>&1; then
	cat "$RUN/haproxy.check" >&2
	echo "bench: haproxy rejects $RUN/haproxy.cfg" >&2
	exit 2
fi
# -W: master + worker (both measured), -db: stay in the foreground.
"$HAPROXY" -W -db -f "$RUN/haproxy.cfg" </dev/null >"$RUN/haproxy.log" 2>&1 &
HAPROXY_PID=$!
echo "$HAPROXY_PID" >"$RUN/haproxy.pid"
if ! wait_port 127.0.0.1 "$HAPROXY_PORT" "$HAPROXY_PID" 10; then
	cat "$RUN/haproxy.log" >&2
	echo "bench: haproxy did not start" >&2
	exit 2
fi

MCD_STATUS=ok
MCD_WHY=""
mcd_fail() {
	MCD_STATUS=failed
	MCD_WHY=$1
	log "mailclusterd: $1"
}
if [ ! -x "$MCD" ] || [ ! -x "$MCCLI" ]; then
	mcd_fail "$MCD or $MCCLI is missing (run make)"
else
	log "setting up mailclusterd on 127.0.0.1:$MCD_PORT"
	cat >"$RUN/mailcluster.conf" <<EOF
site = dc1
geodb = sqlite:$RUN/geodb.sqlite
localdb = $RUN/localdb.sqlite
group_count = 1024
listen {
  imap = 127.0.0.1:$MCD_PORT
  lmtp = 127.0.0.1:$MCD_LMTP_PORT
}
backend_port {
  imap = $BACKEND_PORT
  lmtp = $BACKEND_LMTP_PORT
}
lmtp_username = localpart
plaintext_auth = always
admin_listen = 127.0.0.1:$ADMIN_PORT
log_level = warning
EOF
	cli() { timeout 30 "$MCCLI" -c "$RUN/mailcluster.conf" "$@" >>"$RUN/mailcluster-cli.log" 2>&1; }
	if ! cli site add dc1; then
		mcd_fail "'mailcluster site add dc1' failed (see $RUN/mailcluster-cli.log)"
	elif ! cli backend add --site dc1 backend1 "$BACKEND_IP"; then
		mcd_fail "'mailcluster backend add' failed (see $RUN/mailcluster-cli.log)"
	elif ! cli backend update --status online backend1; then
		mcd_fail "'mailcluster backend update --status online' failed (see $RUN/mailcluster-cli.log)"
	else
		"$MCD" -c "$RUN/mailcluster.conf" -F </dev/null >"$RUN/mailclusterd.out" 2>"$RUN/mailclusterd.log" &
		MCD_PID=$!
		echo "$MCD_PID" >"$RUN/mailclusterd.pid"
		if ! wait_port 127.0.0.1 "$MCD_PORT" "$MCD_PID" 15; then
			tail -n 20 "$RUN/mailclusterd.log" >&2
			if kill -0 "$MCD_PID" 2>/dev/null; then
				mcd_fail "mailclusterd did not accept on 127.0.0.1:$MCD_PORT within 15 s (see $RUN/mailclusterd.log)"
				stop_pid "$MCD_PID" mailclusterd
			else
				wait "$MCD_PID"
				mcd_fail "mailclusterd exited at start-up with status $? (see $RUN/mailclusterd.log)"
			fi
			MCD_PID=""
		fi
	fi
fi

# ---------------------------------------------------------------- measuring

declare -A HOST PORT RELAY RATE P50 P99 CPU IDLEKB NOTE STATUS
HOST[direct]=$BACKEND_IP
PORT[direct]=$BACKEND_PORT
RELAY[direct]=""
HOST[haproxy]=127.0.0.1
PORT[haproxy]=$HAPROXY_PORT
RELAY[haproxy]=$HAPROXY_PID
HOST[mailclusterd]=127.0.0.1
PORT[mailclusterd]=$MCD_PORT
RELAY[mailclusterd]=$MCD_PID
TARGETS=(direct haproxy mailclusterd)
for t in "${TARGETS[@]}"; do
	RATE[$t]=-; P50[$t]=-; P99[$t]=-; CPU[$t]=-; IDLEKB[$t]=-; NOTE[$t]=""; STATUS[$t]=ok
done
if [ "$MCD_STATUS" != ok ]; then
	STATUS[mailclusterd]=failed
	NOTE[mailclusterd]=$MCD_WHY
fi
ANY_FAILURE=0

note() { # note TARGET TEXT
	NOTE[$1]="${NOTE[$1]:+${NOTE[$1]}; }$2"
	log "$1: $2"
}

relay_alive() { # relay_alive TARGET
	local pid=${RELAY[$1]}
	[ -z "$pid" ] && return 0
	# a relay that died is our unreaped child: a zombie still answers kill -0
	local state
	state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)
	[ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

run_sessions() { # run_sessions TARGET N TIMEOUT OUTPREFIX -> prints imapload's line
	"$IMAPLOAD" session --host "${HOST[$1]}" --port "${PORT[$1]}" --sessions "$2" \
		--concurrency "$CONC" --users "$USERS" --password "$PASSWORD" \
		--timeout-sec "$3" --op-timeout-sec 10 \
		>"$4.out" 2>"$4.err" </dev/null
	cat "$4.out"
}

# 1. warm-up (not counted); a target that cannot complete a single session
#    is marked failed and not measured further.
for t in "${TARGETS[@]}"; do
	[ "${STATUS[$t]}" = ok ] || continue
	[ "$WARMUP" -gt 0 ] || continue
	log "$t: warm-up, $WARMUP sessions"
	line=$(run_sessions "$t" "$WARMUP" 20 "$RUN/warmup-$t")
	ok=$(kv sessions_ok "$line")
	failed=$(kv sessions_failed "$line")
	if [ "${ok:-0}" -eq 0 ]; then
		STATUS[$t]=failed
		note "$t" "warm-up: no session succeeded ($(head -n 3 "$RUN/warmup-$t.err" | tr '\n' ' '))"
	elif [ "${failed:-0}" -gt 0 ]; then
		note "$t" "warm-up: $failed of $WARMUP sessions failed (see $RUN/warmup-$t.err)"
	fi
done

# 2. session throughput and relay CPU per session: ROUNDS rounds, the targets
#    interleaved within each round so that drift (Dovecot warming up, other
#    load) hits all of them alike; figures are aggregated over the rounds.
#    A target whose run hits the overall timeout is not run again, and no new
#    round starts after 200 s, so a hanging target cannot stretch the run.
SESSION_TIMEOUT=$((20 + SESSIONS / 200))
declare -A SUM_OK SUM_ELAPSED SUM_TICKS P50S P99S
for t in "${TARGETS[@]}"; do
	SUM_OK[$t]=0; SUM_ELAPSED[$t]=0; SUM_TICKS[$t]=0; P50S[$t]=""; P99S[$t]=""
done
for round in $(seq "$ROUNDS"); do
	if [ $((SECONDS - T_START)) -gt 200 ]; then
		log "time budget used up: skipping rounds $round..$ROUNDS"
		for t in "${TARGETS[@]}"; do
			[ "${STATUS[$t]}" = ok ] && note "$t" "only $((round - 1)) of $ROUNDS rounds run (time budget)"
		done
		break
	fi
	for t in "${TARGETS[@]}"; do
		[ "${STATUS[$t]}" = ok ] || continue
		log "$t: round $round/$ROUNDS, $SESSIONS sessions, concurrency $CONC"
		relay=${RELAY[$t]}
		out="$RUN/session-$t-$round"
		[ -n "$relay" ] && cpu0=$(cpu_ticks "$relay")
		line=$(run_sessions "$t" "$SESSIONS" "$SESSION_TIMEOUT" "$out")
		[ -n "$relay" ] && cpu1=$(cpu_ticks "$relay")
		log "$t: $line"
		ok=$(kv sessions_ok "$line")
		failed=$(kv sessions_failed "$line")
		if [ -z "$ok" ]; then
			STATUS[$t]=failed
			note "$t" "imapload gave no result (see $out.err)"
			continue
		fi
		if [ "$failed" -gt 0 ]; then
			ANY_FAILURE=1
			note "$t" "round $round: $failed of $SESSIONS sessions failed: $(head -n 3 "$out.err" | tr '\n' ' ')"
			grep -qE 'overall_timeout|not_started' "$out.err" && STATUS[$t]=failed
		fi
		[ "$ok" -gt 0 ] || STATUS[$t]=failed
		relay_alive "$t" || { STATUS[$t]=failed; note "$t" "the relay process died"; }
		[ "${STATUS[$t]}" = ok ] || continue
		SUM_OK[$t]=$((SUM_OK[$t] + ok))
		SUM_ELAPSED[$t]=$(awk -v a="${SUM_ELAPSED[$t]}" -v b="$(kv elapsed_s "$line")" 'BEGIN { print a + b }')
		P50S[$t]+="$(kv p50_ms "$line") "
		P99S[$t]+="$(kv p99_ms "$line") "
		if [ -n "$relay" ]; then
			SUM_TICKS[$t]=$((SUM_TICKS[$t] + cpu1 - cpu0))
			log "$t: relay CPU $((cpu1 - cpu0)) ticks (CLK_TCK $CLK_TCK) for $ok sessions"
		fi
	done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }
for t in "${TARGETS[@]}"; do
	[ "${STATUS[$t]}" = ok ] && [ "${SUM_OK[$t]}" -gt 0 ] || continue
	RATE[$t]=$(awk -v n="${SUM_OK[$t]}" -v e="${SUM_ELAPSED[$t]}" 'BEGIN { printf "%.1f", (e > 0 ? n / e : 0) }')
	P50[$t]=$(median <<<"${P50S[$t]}")
	P99[$t]=$(median <<<"${P99S[$t]}")
	if [ -n "${RELAY[$t]}" ]; then
		CPU[$t]=$(awk -v d="${SUM_TICKS[$t]}" -v hz="$CLK_TCK" -v n="${SUM_OK[$t]}" \
			'BEGIN { printf "%.3f", d * 1000 / hz / n }')
	fi
done

# 3. memory per idle logged-in connection (relays only)
IDLE_TIMEOUT=$((20 + IDLE / 100))
for t in haproxy mailclusterd; do
	[ "${STATUS[$t]}" = ok ] || continue
	[ "$IDLE" -gt 0 ] || continue
	relay=${RELAY[$t]}
	log "$t: holding $IDLE idle logged-in connections"
	ready_file="$RUN/idle-$t.ready"
	rss0=$(rss_kb "$relay")
	"$IMAPLOAD" idle --host "${HOST[$t]}" --port "${PORT[$t]}" --connections "$IDLE" \
		--users "$USERS" --password "$PASSWORD" --ramp 200 --timeout-sec "$IDLE_TIMEOUT" \
		--op-timeout-sec 20 --hold-sec $((IDLE_TIMEOUT + 30)) --ready-file "$ready_file" \
		</dev/null >"$RUN/idle-$t.out" 2>"$RUN/idle-$t.err" &
	IDLE_PID=$!
	end=$((SECONDS + IDLE_TIMEOUT + 10))
	while [ ! -e "$ready_file" ] && [ $SECONDS -lt $end ] && kill -0 "$IDLE_PID" 2>/dev/null; do
		sleep 0.2
	done
	if [ -e "$ready_file" ]; then
		sleep 1 # let the relay settle
		rss1=$(rss_kb "$relay")
		line=$(cat "$ready_file")
		ready=$(kv idle_ready "$line")
		failed=$(kv failed "$line")
		log "$t: $line; relay RSS ${rss0} KB -> ${rss1} KB"
		if [ "${ready:-0}" -gt 0 ]; then
			IDLEKB[$t]=$(awk -v d=$((rss1 - rss0)) -v n="$ready" 'BEGIN { printf "%.1f", d / n }')
		fi
		if [ "${failed:-0}" -gt 0 ]; then
			ANY_FAILURE=1
			note "$t" "$failed of $IDLE idle connections failed to log in: $(head -n 4 "$RUN/idle-$t.err" | grep -v '^imapload:' | tr '\n' ' ')"
		fi
	else
		ANY_FAILURE=1
		note "$t" "idle connections never became ready (see $RUN/idle-$t.err)"
	fi
	stop_pid "$IDLE_PID" "imapload idle"
	IDLE_PID=""
	relay_alive "$t" || { STATUS[$t]=failed; note "$t" "the relay process died"; }
done

# 4. LMTP delivery rate: straight to Dovecot's LMTP and through mailclusterd,
#    LMTP_ROUNDS rounds with the two interleaved; a warm-up of 200 messages
#    each first.  Every message is one transaction to one random user.
declare -A LHOST LPORT LRELAY LRATE LP50 LP99 LCPU LSTATUS LSUM_OK LSUM_ELAPSED LSUM_TICKS LP50S LP99S
LTARGETS=(lmtp_direct lmtp_mailclusterd)
LHOST[lmtp_direct]=$BACKEND_IP
LPORT[lmtp_direct]=$BACKEND_LMTP_PORT
LRELAY[lmtp_direct]=""
LHOST[lmtp_mailclusterd]=127.0.0.1
LPORT[lmtp_mailclusterd]=$MCD_LMTP_PORT
LRELAY[lmtp_mailclusterd]=$MCD_PID
for t in "${LTARGETS[@]}"; do
	LRATE[$t]=-; LP50[$t]=-; LP99[$t]=-; LCPU[$t]=-; LSTATUS[$t]=ok
	LSUM_OK[$t]=0; LSUM_ELAPSED[$t]=0; LSUM_TICKS[$t]=0; LP50S[$t]=""; LP99S[$t]=""
done
if [ "$MCD_STATUS" != ok ] || [ -z "$MCD_PID" ]; then
	LSTATUS[lmtp_mailclusterd]=failed
fi
LMTP_TIMEOUT=$((20 + LMTP_MESSAGES / 100))
run_lmtp() { # run_lmtp TARGET N OUTPREFIX -> prints lmtpload's line
	timeout $((LMTP_TIMEOUT + 30)) python3 "$LMTPLOAD" --host "${LHOST[$1]}" --port "${LPORT[$1]}" \
		--messages "$2" --concurrency "$LMTP_CONC" --users "$USERS" --size "$LMTP_SIZE" \
		--timeout-sec "$LMTP_TIMEOUT" --op-timeout-sec 10 >"$3.out" 2>"$3.err" </dev/null
	cat "$3.out"
}
if [ "$LMTP_MESSAGES" -gt 0 ] && [ ! -f "$LMTPLOAD" ]; then
	log "lmtp: $LMTPLOAD is missing: no LMTP rows"
	LMTP_MESSAGES=0
fi
if [ "$LMTP_MESSAGES" -gt 0 ]; then
	for t in "${LTARGETS[@]}"; do
		[ "${LSTATUS[$t]}" = ok ] || continue
		log "$t: warm-up, 200 messages"
		line=$(run_lmtp "$t" 200 "$RUN/warmup-$t")
		if [ "$(kv messages_ok "$line")" = "" ] || [ "$(kv messages_ok "$line")" -eq 0 ]; then
			LSTATUS[$t]=failed
			ANY_FAILURE=1
			log "$t: warm-up: no message delivered ($(head -n 3 "$RUN/warmup-$t.err" | tr '\n' ' '))"
		fi
	done
	for round in $(seq "$LMTP_ROUNDS"); do
		for t in "${LTARGETS[@]}"; do
			[ "${LSTATUS[$t]}" = ok ] || continue
			log "$t: round $round/$LMTP_ROUNDS, $LMTP_MESSAGES messages of ~$LMTP_SIZE bytes, concurrency $LMTP_CONC"
			relay=${LRELAY[$t]}
			out="$RUN/$t-$round"
			[ -n "$relay" ] && cpu0=$(cpu_ticks "$relay")
			line=$(run_lmtp "$t" "$LMTP_MESSAGES" "$out")
			[ -n "$relay" ] && cpu1=$(cpu_ticks "$relay")
			log "$t: $line"
			ok=$(kv messages_ok "$line")
			failed=$(kv messages_failed "$line")
			if [ -z "$ok" ]; then
				LSTATUS[$t]=failed
				ANY_FAILURE=1
				log "$t: lmtpload gave no result (see $out.err)"
				continue
			fi
			if [ "$failed" -gt 0 ] || [ "$(kv not_started "$line")" != 0 ]; then
				ANY_FAILURE=1
				log "$t: round $round: $failed failed: $(head -n 3 "$out.err" | tr '\n' ' ')"
			fi
			[ "$ok" -gt 0 ] || { LSTATUS[$t]=failed; continue; }
			LSUM_OK[$t]=$((LSUM_OK[$t] + ok))
			LSUM_ELAPSED[$t]=$(awk -v a="${LSUM_ELAPSED[$t]}" -v b="$(kv elapsed_s "$line")" 'BEGIN { print a + b }')
			LP50S[$t]+="$(kv p50_ms "$line") "
			LP99S[$t]+="$(kv p99_ms "$line") "
			[ -n "$relay" ] && LSUM_TICKS[$t]=$((LSUM_TICKS[$t] + cpu1 - cpu0))
		done
	done
	for t in "${LTARGETS[@]}"; do
		[ "${LSTATUS[$t]}" = ok ] && [ "${LSUM_OK[$t]}" -gt 0 ] || continue
		LRATE[$t]=$(awk -v n="${LSUM_OK[$t]}" -v e="${LSUM_ELAPSED[$t]}" 'BEGIN { printf "%.1f", (e > 0 ? n / e : 0) }')
		LP50[$t]=$(median <<<"${LP50S[$t]}")
		LP99[$t]=$(median <<<"${LP99S[$t]}")
		if [ -n "${LRELAY[$t]}" ]; then
			LCPU[$t]=$(awk -v d="${LSUM_TICKS[$t]}" -v hz="$CLK_TCK" -v n="${LSUM_OK[$t]}" \
				'BEGIN { printf "%.3f", d * 1000 / hz / n }')
		fi
	done
fi

# ---------------------------------------------------------------- report

for t in "${TARGETS[@]}"; do
	[ "${STATUS[$t]}" = ok ] || ANY_FAILURE=1
done

REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)
{
	printf '# %s  rev %s  sessions=%sx%s concurrency=%s idle=%s haproxy_nbthread=%s cores=%s elapsed=%ss\n' \
		"$(date '+%Y-%m-%d %H:%M:%S %z')" "$REV" "$ROUNDS" "$SESSIONS" "$CONC" "$IDLE" \
		"$HAPROXY_THREADS" "$(nproc)" $((SECONDS - T_START))
	printf '%-13s %11s %15s %13s %9s %9s\n' target sessions/s cpu_ms/session idle_kb/conn p50_ms p99_ms
	for t in "${TARGETS[@]}"; do
		if [ "${STATUS[$t]}" = ok ]; then
			printf '%-13s %11s %15s %13s %9s %9s\n' "$t" "${RATE[$t]}" "${CPU[$t]}" \
				"${IDLEKB[$t]}" "${P50[$t]}" "${P99[$t]}"
		else
			printf '%-13s %11s %15s %13s %9s %9s\n' "$t" FAILED - - - -
		fi
	done
	if [ "$LMTP_MESSAGES" -gt 0 ]; then
		printf '%-18s %8s %11s %9s %9s   (%sx%s messages of ~%s B, concurrency %s)\n' \
			lmtp_target msgs/s cpu_ms/msg p50_ms p99_ms "$LMTP_ROUNDS" "$LMTP_MESSAGES" \
			"$LMTP_SIZE" "$LMTP_CONC"
		for t in "${LTARGETS[@]}"; do
			if [ "${LSTATUS[$t]}" = ok ]; then
				printf '%-18s %8s %11s %9s %9s\n' "$t" "${LRATE[$t]}" "${LCPU[$t]}" \
					"${LP50[$t]}" "${LP99[$t]}"
			else
				printf '%-18s %8s %11s %9s %9s\n' "$t" FAILED - - -
			fi
		done
	fi
	for t in "${TARGETS[@]}"; do
		[ -n "${NOTE[$t]}" ] && printf '  note: %s: %s\n' "$t" "${NOTE[$t]}"
	done
} >"$RUN/results.txt"

echo
cat "$RUN/results.txt"
{ cat "$RUN/results.txt"; echo; } >>"$ROOT/bench/results.txt"
log "appended to bench/results.txt; logs in $RUN"

exit "$ANY_FAILURE"
