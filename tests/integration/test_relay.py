"""The post-login relay (splice for plain connections, bufferevents for TLS): bytes arrive
intact in both directions, under concurrency, with a slow reader and with a half-closed client."""

from __future__ import annotations

import concurrent.futures
import hashlib
import imaplib
import re
import socket
import time

import pytest

from mchelpers import RawIMAP, backend_of, close_quietly, unverified_ssl_context

BIG_LINES = 14000  # ~1 MB


def _big_message(tag: str) -> bytes:
    body = b"".join(b"%s line %06d abcdefghijklmnopqrstuvwxyz0123456789 %s\r\n"
                    % (tag.encode(), i, hashlib.sha1(b"%d" % i).hexdigest().encode())
                    for i in range(BIG_LINES))
    return (f"From: relay test <relay@example.com>\r\nTo: {tag}@example.com\r\n"
            f"Subject: big message {tag}\r\n\r\n").encode() + body


def _append(c: imaplib.IMAP4, msg: bytes) -> int:
    typ, data = c.append("INBOX", None, None, msg)
    assert typ == "OK", (typ, data)
    m = re.search(rb"APPENDUID \d+ (\d+)", data[0])
    assert m, data
    return int(m.group(1))


def _uid_fetch_body(c: imaplib.IMAP4, uid: int) -> bytes:
    typ, data = c.uid("FETCH", str(uid), "(BODY.PEEK[])")
    assert typ == "OK", (typ, data)
    return data[0][1]


def _backend(fleet, name):
    return next(b for b in fleet.backends if b.name == name)


def _direct_login(fleet, name, user):
    b = _backend(fleet, name)
    c = imaplib.IMAP4(b.ip, b.ports["imap"], timeout=30)
    assert c.login(user, "password")[0] == "OK"
    return c


def _literal_of(data: bytes) -> bytes:
    m = re.search(rb"\{(\d+)\}\r\n", data)
    assert m, data[:300]
    n = int(m.group(1))
    return data[m.end():m.end() + n]


def test_large_append_and_fetch_through_splice_relay(cluster, fleet):
    d = cluster()
    user = "user299"
    msg = _big_message(user)
    c = d.login(user)
    try:
        name = backend_of(c)
        assert c.select("INBOX")[0] == "OK"
        uid = _append(c, msg)
        got = _uid_fetch_body(c, uid)
        assert len(got) == len(msg) and got == msg
        # The small original messages too, several times, identical to a direct login.
        typ, proxied = c.fetch("1:3", "(BODY.PEEK[])")
        assert typ == "OK"
        for _ in range(3):
            assert c.fetch("1:3", "(BODY.PEEK[])")[1] == proxied
    finally:
        close_quietly(c)

    direct = _direct_login(fleet, name, user)
    try:
        assert direct.select("INBOX")[0] == "OK"
        assert _uid_fetch_body(direct, uid) == msg, "the backend did not store what we sent"
        assert direct.fetch("1:3", "(BODY.PEEK[])")[1] == proxied
    finally:
        close_quietly(direct)


@pytest.mark.parametrize("tls", [False, True], ids=["splice", "tls"])
def test_concurrent_large_fetches_and_slow_reader(cluster, tls):
    d = cluster(tls=tls)
    user = "user296" if not tls else "user294"
    msg = _big_message(user)
    c = d.login(user)
    try:
        c.select("INBOX")
        uid = _append(c, msg)
    finally:
        close_quietly(c)

    def fetch_raw(slow: bool) -> bytes:
        r = d.raw(timeout=30, tls=tls)
        try:
            r.send(f"a LOGIN {user} password\r\ns SELECT INBOX\r\n".encode())
            r.read_until_tagged(b"a")
            r.read_until_tagged(b"s")
            if slow:
                # shrink our receive window and start reading late: the relay must hold back
                r.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            r.send(f"f UID FETCH {uid} BODY.PEEK[]\r\n".encode())
            if slow:
                time.sleep(1.0)
                data = b""
                while b"\r\nf OK" not in data[-200:]:
                    chunk = r.sock.recv(65536)
                    assert chunk, "closed early"
                    data += chunk
                return data
            return b"".join(r.read_until_tagged(b"f"))
        finally:
            r.close()

    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        futs = [pool.submit(fetch_raw, i == 0) for i in range(6)]
        results = [f.result(timeout=90) for f in futs]
    for i, data in enumerate(results):
        assert _literal_of(data) == msg, f"fetch {i} (slow={i == 0}) corrupted"
        assert re.search(rb"\r\nf OK", data), data[-200:]


def test_large_append_and_fetch_through_tls_relay(cluster, fleet):
    d = cluster(tls=True)
    user = "user298"
    msg = _big_message(user)
    c = imaplib.IMAP4_SSL("127.0.0.1", d.imaps_port, ssl_context=unverified_ssl_context(),
                          timeout=30)
    try:
        assert c.login(user, "password")[0] == "OK"
        name = backend_of(c)
        assert c.select("INBOX")[0] == "OK"
        uid = _append(c, msg)
        assert _uid_fetch_body(c, uid) == msg
    finally:
        close_quietly(c)
    direct = _direct_login(fleet, name, user)
    try:
        direct.select("INBOX")
        assert _uid_fetch_body(direct, uid) == msg
    finally:
        close_quietly(direct)


def test_half_closed_client_still_gets_the_whole_answer(cluster, fleet):
    """The client sends its last command and shuts down its sending side; the backend's full
    answer must still come back through the relay, exactly as on a direct connection."""
    d = cluster()
    user = "user297"
    msg = _big_message(user)
    c = d.login(user)
    try:
        name = backend_of(c)
        c.select("INBOX")
        uid = _append(c, msg)
    finally:
        close_quietly(c)
    b = _backend(fleet, name)

    def half_close_fetch(port, host):
        r = RawIMAP(port, host=host, timeout=30)
        try:
            r.send(f"a LOGIN {user} password\r\n".encode())
            assert r.read_until_tagged(b"a")[-1].startswith(b"a OK")
            r.send(b"s SELECT INBOX\r\n")
            r.read_until_tagged(b"s")
            r.send(f"f UID FETCH {uid} BODY.PEEK[]\r\nz LOGOUT\r\n".encode())
            r.sock.shutdown(socket.SHUT_WR)
            return r.read_to_eof(timeout=30)
        finally:
            r.close()

    direct = half_close_fetch(b.ports["imap"], b.ip)
    proxied = half_close_fetch(d.imap_port, "127.0.0.1")
    assert _literal_of(direct) == msg  # the reference behaves as expected
    assert _literal_of(proxied) == msg
    assert b"* BYE" in proxied and re.search(rb"\r\nz OK", proxied), proxied[-300:]
    norm = lambda x: re.sub(rb"\([0-9.]+ \+ [0-9.]+( \+ [0-9.]+)? secs\)", b"", x)
    assert norm(proxied) == norm(direct)
