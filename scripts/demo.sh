#!/usr/bin/env bash
# demo.sh - a working mailcluster on loopback: three real Dovecot backends
# (127.0.0.2-4, users user1..user100, password "password"), one
# mailclusterd in front of them with an embedded SQLite GeoDB, set up with
# the mailcluster CLI the way an operator would.
#
#   scripts/demo.sh start     (what `make demo` runs)
#   scripts/demo.sh stop      (what `make demo-stop` runs)
#
# Everything lives in $DEMO_DIR (default /tmp/mailcluster-demo).  Ports on
# 127.0.0.1: IMAP 10143, IMAPS 10993, POP3 10110, POP3S 10995, LMTP 10024,
# ManageSieve 14190, Submission 10587, Submissions 10465, admin API 10080.
# The backends listen on their own addresses: IMAP 14300, POP3 14310,
# LMTP 14320, ManageSieve 14340, Submission 14350.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
DEMO_DIR=${DEMO_DIR:-/tmp/mailcluster-demo}
IMAP_PORT=${DEMO_IMAP_PORT:-10143}
IMAPS_PORT=${DEMO_IMAPS_PORT:-10993}
ADMIN_PORT=${DEMO_ADMIN_PORT:-10080}
BACKEND_IMAP_PORT=14300
BACKEND_POP3_PORT=14310
BACKEND_LMTP_PORT=14320
BACKEND_SIEVE_PORT=14340
BACKEND_SUBMISSION_PORT=14350
conf=$DEMO_DIR/mailcluster.conf
cli=("$top/build/mailcluster" -c "$conf")

stop() {
	if [ -f "$DEMO_DIR/mailclusterd.pid" ]; then
		pid=$(cat "$DEMO_DIR/mailclusterd.pid")
		if kill -0 "$pid" 2>/dev/null; then
			kill "$pid"
			for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			kill -9 "$pid" 2>/dev/null || true
		fi
		rm -f "$DEMO_DIR/mailclusterd.pid"
	fi
	if [ -f "$DEMO_DIR/backends/backends.json" ]; then
		python3 "$top/scripts/backends.py" stop --dir "$DEMO_DIR/backends" || true
	fi
	echo "demo stopped"
}

wait_for_port() {
	for _ in $(seq 100); do
		if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.2).close()" 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	echo "demo: nothing answers on 127.0.0.1:$1; see $DEMO_DIR/mailclusterd.log" >&2
	return 1
}

start() {
	[ -x "$top/build/mailclusterd" ] || { echo "demo: run 'make' first" >&2; exit 1; }
	stop >/dev/null 2>&1 || true
	rm -rf "$DEMO_DIR"
	mkdir -p "$DEMO_DIR"
	echo "== starting 3 Dovecot backends"
	python3 "$top/scripts/backends.py" start --dir "$DEMO_DIR/backends" --count 3 \
		--first-ip 127.0.0.2 --imap-port $BACKEND_IMAP_PORT --pop3-port $BACKEND_POP3_PORT \
		--lmtp-port $BACKEND_LMTP_PORT --sieve-port $BACKEND_SIEVE_PORT \
		--submission-port $BACKEND_SUBMISSION_PORT --users 100 --messages 3

	openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 30 \
		-keyout "$DEMO_DIR/key.pem" -out "$DEMO_DIR/cert.pem" 2>/dev/null
	cat >"$conf" <<CONF
# mailcluster demo configuration
site = demo
geodb = sqlite:$DEMO_DIR/geodb.sqlite
localdb = $DEMO_DIR/localdb.sqlite
group_count = 1024
listen {
  imap = 127.0.0.1:$IMAP_PORT
  imaps = 127.0.0.1:$IMAPS_PORT
  pop3 = 127.0.0.1:10110
  pop3s = 127.0.0.1:10995
  lmtp = 127.0.0.1:10024
  sieve = 127.0.0.1:14190
  submission = 127.0.0.1:10587
  submissions = 127.0.0.1:10465
}
backend_port {
  imap = $BACKEND_IMAP_PORT
  pop3 = $BACKEND_POP3_PORT
  lmtp = $BACKEND_LMTP_PORT
  sieve = $BACKEND_SIEVE_PORT
  submission = $BACKEND_SUBMISSION_PORT
}
tls_cert = $DEMO_DIR/cert.pem
tls_key = $DEMO_DIR/key.pem
admin_listen = 127.0.0.1:$ADMIN_PORT
proxy_timeout = 10s
# users log in as userN, mail comes for userN@example.com: route LMTP by the
# local part so deliveries meet the user's logins
lmtp_username = localpart
CONF

	echo "== setting up the cluster with the CLI"
	"${cli[@]}" site add demo
	for i in 1 2 3; do
		"${cli[@]}" backend add --site demo backend$i 127.0.0.$((i + 1)) >/dev/null
		"${cli[@]}" backend update --status online backend$i
	done
	"${cli[@]}" backend list

	echo "== starting mailclusterd"
	"$top/build/mailclusterd" -c "$conf" -F </dev/null >/dev/null 2>>"$DEMO_DIR/mailclusterd.log" &
	echo $! >"$DEMO_DIR/mailclusterd.pid"
	wait_for_port $IMAP_PORT

	cat <<TXT

mailcluster demo is running (logs: $DEMO_DIR/mailclusterd.log).

Log in as user1..user100 with password "password":

  python3 -c 'import imaplib; c = imaplib.IMAP4("127.0.0.1", $IMAP_PORT); c.login("user7", "password"); print(c.select("INBOX")); c.logout()'
  curl --user user7:password imap://127.0.0.1:$IMAP_PORT/INBOX -X 'FETCH 1:* (FLAGS)'
  curl -k --user user7:password imaps://127.0.0.1:$IMAPS_PORT/INBOX -X 'FETCH 1:* (FLAGS)'
  curl --user user7:password pop3://127.0.0.1:10110/           # POP3: list messages
  python3 -c 'import smtplib; l = smtplib.LMTP("127.0.0.1", 10024); print(l.sendmail("a@example.com", ["user7@example.com"], "Subject: hi\r\n\r\nhello\r\n"))'
  python3 -c 'import smtplib; s = smtplib.SMTP("127.0.0.1", 10587); s.ehlo(); print(s.login("user7", "password"))'
  (ManageSieve on 127.0.0.1:14190, e.g. sieve-connect --server 127.0.0.1 --port 14190 --user user7)

Look at the cluster:

  build/mailcluster -c $conf user status user7
  build/mailcluster -c $conf backend list
  build/mailcluster -c $conf who
  curl http://127.0.0.1:$ADMIN_PORT/metrics

Stop it with: make demo-stop
TXT
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
