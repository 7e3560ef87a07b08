#!/usr/bin/env python3
"""lmtpload.py - LMTP delivery load: N messages of about SIZE bytes, each to one random user,
over CONCURRENCY connections, and the delivery rate.

Each connection says LHLO once, then runs transactions back to back: MAIL FROM, RCPT TO and
DATA pipelined in one write (RFC 2920), the three replies, the message, its reply.  A message
counts as delivered when the server's reply to the message is 2xx; anything else (a 4xx/5xx
reply, a timeout, a closed connection) counts as failed, and a connection that failed is
replaced by a new one.  Bounded: no message is started after --timeout-sec, and every socket
operation has --op-timeout-sec.

Prints one line of key=value fields on stdout:

    messages_ok=2000 messages_failed=0 elapsed_s=2.431 msgs_per_s=822.7 p50_ms=4.6 p99_ms=11.0

and the first few failures on stderr.  Exit status 0 if every message was delivered, 1 if
any failed or the time ran out first, 2 on bad usage.

    lmtpload.py --host 127.0.0.1 --port 24125 --messages 2000 --concurrency 4 \\
                --users 1-100 --size 2048 [--domain bench.test] [--timeout-sec 60]
"""

from __future__ import annotations

import argparse
import random
import socket
import sys
import threading
import time


class LMTPError(Exception):
    pass


class Connection:
    def __init__(self, host: str, port: int, timeout: float):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.expect(b"220")
        self.sock.sendall(b"LHLO lmtpload.bench.test\r\n")
        self.expect(b"250")

    def reply(self) -> bytes:
        """One (possibly multi-line) reply; returns its last line."""
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise LMTPError("connection closed by the server")
                self.buf += chunk
            line, _, self.buf = self.buf.partition(b"\r\n")
            if len(line) < 4 or line[3:4] != b"-":
                return line

    def expect(self, code: bytes) -> bytes:
        line = self.reply()
        if not line.startswith(code):
            raise LMTPError(f"expected {code.decode()}, got {line[:200]!r}")
        return line

    def deliver(self, rcpt: bytes, message: bytes) -> None:
        self.sock.sendall(b"MAIL FROM:<lmtpload@bench.test>\r\nRCPT TO:<" + rcpt + b">\r\n"
                          b"DATA\r\n")
        self.expect(b"250")
        line = self.reply()
        if not line.startswith(b"250"):
            self.expect(b"5")  # DATA without a recipient: 503/554
            raise LMTPError(f"RCPT TO:<{rcpt.decode()}> refused: {line[:200]!r}")
        self.expect(b"354")
        self.sock.sendall(message)
        self.expect(b"2")

    def close(self) -> None:
        try:
            self.sock.sendall(b"QUIT\r\n")
            self.sock.close()
        except OSError:
            pass


def make_message(size: int, n: int) -> bytes:
    head = (f"From: lmtpload <lmtpload@bench.test>\r\nSubject: lmtpload message {n}\r\n"
            f"Message-ID: <{n}.{time.time_ns()}@lmtpload.bench.test>\r\n\r\n").encode()
    line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
    body = head
    while len(body) + len(line) <= size:
        body += line
    return body + b".\r\n"


def parse_users(spec: str) -> tuple[int, int]:
    lo, _, hi = spec.partition("-")
    lo_n, hi_n = int(lo), int(hi or lo)
    if lo_n < 1 or hi_n < lo_n:
        raise ValueError(spec)
    return lo_n, hi_n


def main() -> int:
    ap = argparse.ArgumentParser(description="LMTP delivery load generator")
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--users", default="1-100", help="user numbers, e.g. 1-100 (userN)")
    ap.add_argument("--domain", default="bench.test")
    ap.add_argument("--size", type=int, default=2048, help="approximate message size, bytes")
    ap.add_argument("--timeout-sec", type=float, default=60)
    ap.add_argument("--op-timeout-sec", type=float, default=10)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    try:
        lo, hi = parse_users(args.users)
    except ValueError:
        print(f"lmtpload: bad --users {args.users!r} (expected N-M)", file=sys.stderr)
        return 2
    if args.messages < 1 or args.concurrency < 1 or args.size < 100:
        print("lmtpload: --messages and --concurrency must be >= 1, --size >= 100",
              file=sys.stderr)
        return 2

    rnd = random.Random(args.seed)
    rcpts = [f"user{rnd.randint(lo, hi)}@{args.domain}".encode() for _ in range(args.messages)]
    messages = [make_message(args.size, i) for i in range(min(args.messages, 64))]
    lock = threading.Lock()
    state = {"next": 0, "ok": 0, "failed": 0, "errors": []}
    latencies: list[float] = []
    t0 = time.monotonic()
    deadline = t0 + args.timeout_sec

    def take() -> int | None:
        with lock:
            if state["next"] >= args.messages or time.monotonic() > deadline:
                return None
            state["next"] += 1
            return state["next"] - 1

    def fail(what: str) -> None:
        with lock:
            state["failed"] += 1
            if len(state["errors"]) < 5:
                state["errors"].append(what)

    def worker() -> None:
        conn = None
        while (i := take()) is not None:
            try:
                if conn is None:
                    conn = Connection(args.host, args.port, args.op_timeout_sec)
                start = time.monotonic()
                conn.deliver(rcpts[i], messages[i % len(messages)])
                elapsed = time.monotonic() - start
                with lock:
                    state["ok"] += 1
                    latencies.append(elapsed)
            except (OSError, LMTPError) as e:
                fail(f"message {i} to {rcpts[i].decode()}: {e}")
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()) + args.op_timeout_sec + 5)
    elapsed = time.monotonic() - t0
    not_started = args.messages - state["next"]
    latencies.sort()

    def pct(p: float) -> str:
        if not latencies:
            return "-"
        return f"{latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000:.1f}"

    rate = state["ok"] / elapsed if elapsed > 0 else 0.0
    print(f"messages_ok={state['ok']} messages_failed={state['failed']} "
          f"not_started={not_started} elapsed_s={elapsed:.3f} msgs_per_s={rate:.1f} "
          f"p50_ms={pct(0.50)} p99_ms={pct(0.99)}", flush=True)
    for e in state["errors"]:
        print(f"lmtpload: {e}", file=sys.stderr)
    if not_started:
        print(f"lmtpload: overall_timeout: {not_started} messages not started within "
              f"{args.timeout_sec:g}s", file=sys.stderr)
    return 0 if state["failed"] == 0 and not_started == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
