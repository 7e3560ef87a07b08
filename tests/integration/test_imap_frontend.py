"""The pre-login IMAP front-end: TLS, LOGIN/AUTHENTICATE syntax, failures and protocol abuse."""

from __future__ import annotations

import base64
import concurrent.futures
import imaplib
import random
import re
import socket
import ssl
import struct

import pytest

from mchelpers import (RawIMAP, backend_of, close_quietly, imap_connect, unverified_ssl_context,
                       wait_for)

LOGGED_IN = re.compile(rb"^(\S+) OK( \[CAPABILITY [^\]]*\])? Logged in")


def _plain_ir(user: str, password: str = "password", authzid: str = "") -> bytes:
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode())


def _assert_logged_in(lines, tag: bytes):
    m = LOGGED_IN.match(lines[-1])
    assert m and m.group(1) == tag, lines


def _assert_select_works(r: RawIMAP, tag: bytes = b"s"):
    r.send(tag + b" SELECT INBOX\r\n")
    lines = r.read_until_tagged(tag)
    assert lines[-1].startswith(tag + b" OK"), lines
    assert any(re.match(rb"\* \d+ EXISTS", l) for l in lines), lines


def _raw_backend_name(r: RawIMAP) -> str:
    r.send(b"i ID NIL\r\n")
    lines = r.read_until_tagged(b"i")
    assert lines[-1].startswith(b"i OK"), lines
    m = re.search(rb'"name" "([^"]+)"', b"".join(lines))
    assert m, lines
    return m.group(1).decode()


# --------------------------------------------------------------------------- greeting / TLS


def test_greeting_and_capability(shared_cluster):
    r = shared_cluster.raw()
    try:
        assert r.greeting.startswith(b"* OK"), r.greeting
        r.send(b"c CAPABILITY\r\n")
        lines = r.read_until_tagged(b"c")
        caps = lines[0].split()
        assert lines[0].startswith(b"* CAPABILITY ") and lines[-1].startswith(b"c OK"), lines
        for cap in (b"IMAP4rev1", b"STARTTLS", b"AUTH=PLAIN", b"SASL-IR", b"LITERAL+", b"ID"):
            assert cap in caps, (cap, lines[0])
        r.send(b"n NOOP\r\n")
        assert r.read_until_tagged(b"n")[-1].startswith(b"n OK")
        r.send(b'i ID ("name" "pytest" "version" "1")\r\n')
        lines = r.read_until_tagged(b"i")
        assert lines[-1].startswith(b"i OK") and lines[0].startswith(b"* ID "), lines
        r.send(b"l LOGOUT\r\n")
        data = r.read_to_eof()
        assert b"* BYE" in data and b"l OK" in data, data
    finally:
        r.close()


def test_starttls_then_login_and_select(shared_cluster):
    d = shared_cluster
    c = imap_connect(d.imap_port)
    try:
        assert "STARTTLS" in c.capabilities
        typ, _ = c.starttls(ssl_context=unverified_ssl_context())
        assert typ == "OK"
        assert isinstance(c.sock, ssl.SSLSocket)
        assert "STARTTLS" not in c.capabilities, c.capabilities  # refreshed after TLS
        assert c.login("user11", "password")[0] == "OK"
        typ, data = c.select("INBOX")
        assert typ == "OK" and int(data[0]) >= 3, (typ, data)
        typ, data = c.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK" and b"Test message 1 for user11" in data[0][1], data
        assert backend_of(c).startswith("backend")
    finally:
        close_quietly(c)
    wait_for(lambda: re.search(r"event=login result=ok protocol=imap user=user11 .* tls=yes",
                               d.log_text()), 5, message="tls=yes login line for user11")


def test_implicit_tls_login_and_select(shared_cluster):
    d = shared_cluster
    c = imaplib.IMAP4_SSL("127.0.0.1", d.imaps_port, ssl_context=unverified_ssl_context(),
                          timeout=20)
    try:
        assert "STARTTLS" not in c.capabilities
        assert c.login("user12", "password")[0] == "OK"
        typ, data = c.select("INBOX")
        assert typ == "OK" and int(data[0]) >= 3, (typ, data)
        typ, data = c.fetch("2", "(BODY.PEEK[TEXT])")
        assert typ == "OK" and b"Hello user12, this is message 2" in data[0][1], data
        assert backend_of(c).startswith("backend")
    finally:
        close_quietly(c)


def test_starttls_drops_commands_pipelined_in_the_clear(shared_cluster):
    """Commands sent in the clear right behind STARTTLS must not run after the handshake."""
    d = shared_cluster
    r = d.raw()
    try:
        r.send(b"t STARTTLS\r\nx LOGIN user13 password\r\n")
        assert r.readline().startswith(b"t OK"), "no OK for STARTTLS"
        assert r.buf == b""
        tls = unverified_ssl_context().wrap_socket(r.sock, server_hostname="localhost")
        r.sock = tls
        r.send(b"n NOOP\r\n")
        lines = r.read_until_tagged(b"n")
        assert not any(l.startswith(b"x ") for l in lines), lines
        assert lines[-1].startswith(b"n OK"), lines
        r.send(b"a LOGIN user13 password\r\n")
        _assert_logged_in(r.read_until_tagged(b"a"), b"a")
        _assert_select_works(r)
    finally:
        r.close()


# --------------------------------------------------------------------------- LOGIN syntax


def test_login_with_synchronising_literals(shared_cluster):
    r = shared_cluster.raw()
    try:
        r.send(b"a LOGIN {6}\r\n")
        assert r.readline().startswith(b"+ "), "no continuation for the first literal"
        r.send(b"user14 {8}\r\n")
        assert r.readline().startswith(b"+ "), "no continuation for the second literal"
        r.send(b"password\r\n")
        _assert_logged_in(r.read_until_tagged(b"a"), b"a")
        _assert_select_works(r, b"b")
    finally:
        r.close()


def test_login_with_literal_plus_without_waiting(shared_cluster):
    r = shared_cluster.raw()
    try:
        # Everything in one write; no "+" continuation may be sent.
        r.send(b"a LOGIN {6+}\r\nuser15 {8+}\r\npassword\r\nb SELECT INBOX\r\n")
        lines = r.read_until_tagged(b"a")
        assert not any(l.startswith(b"+") for l in lines), lines
        _assert_logged_in(lines, b"a")
        # The SELECT pipelined behind the login went to the backend.
        lines = r.read_until_tagged(b"b")
        assert lines[-1].startswith(b"b OK"), lines
    finally:
        r.close()


def test_login_with_quoted_strings(shared_cluster):
    r = shared_cluster.raw()
    try:
        r.send(b'a LOGIN "user16" "password"\r\n')
        _assert_logged_in(r.read_until_tagged(b"a"), b"a")
        _assert_select_works(r)
    finally:
        r.close()


def test_login_quoted_escapes_are_decoded(cluster, fleet):
    """"user\\"q" must reach the backend as user"q (decoded escape), not as a BAD command."""
    d = cluster(proxy_timeout="30s")  # Dovecot delays failed logins by ~2s
    r = d.raw(source_ip="127.0.0.61")
    try:
        r.send(b'a LOGIN "user\\"q" "pass\\\\word"\r\n')
        lines = r.read_until_tagged(b"a")
        assert lines[-1].startswith(b"a NO [AUTHENTICATIONFAILED]"), lines
        r.send(b"n NOOP\r\n")
        assert r.read_until_tagged(b"n")[-1].startswith(b"n OK")
    finally:
        r.close()
    st = d.cli_json("user", "status", 'user"q')[0]
    assert st["user"] == 'user"q', st
    backend = next(b for b in fleet.backends if b.name == st["backend"])
    wait_for(lambda: re.search(r'user=<user"q>.*rip=127\.0\.0\.61', backend.log_text()), 10,
             message=f'user=<user"q> from 127.0.0.61 in {backend.name} log')


# --------------------------------------------------------------------------- AUTHENTICATE


def test_authenticate_plain_with_initial_response(shared_cluster):
    r = shared_cluster.raw()
    try:
        r.send(b"a AUTHENTICATE PLAIN " + _plain_ir("user17") + b"\r\n")
        _assert_logged_in(r.read_until_tagged(b"a"), b"a")
        _assert_select_works(r)
    finally:
        r.close()


def test_authenticate_plain_with_continuation(shared_cluster):
    r = shared_cluster.raw()
    try:
        r.send(b"a AUTHENTICATE PLAIN\r\n")
        assert r.readline().startswith(b"+"), "no continuation request"
        r.send(_plain_ir("user18") + b"\r\n")
        _assert_logged_in(r.read_until_tagged(b"a"), b"a")
        _assert_select_works(r)
    finally:
        r.close()


def test_authenticate_cancel_gives_bad_and_connection_stays_usable(shared_cluster):
    r = shared_cluster.raw()
    try:
        r.send(b"a AUTHENTICATE PLAIN\r\n")
        assert r.readline().startswith(b"+")
        r.send(b"*\r\n")
        lines = r.read_until_tagged(b"a")
        assert lines[-1].startswith(b"a BAD"), lines
        r.send(b"n NOOP\r\n")
        assert r.read_until_tagged(b"n")[-1].startswith(b"n OK")
        r.send(b"b AUTHENTICATE PLAIN " + _plain_ir("user19") + b"\r\n")
        _assert_logged_in(r.read_until_tagged(b"b"), b"b")
        assert _raw_backend_name(r).startswith("backend")
    finally:
        r.close()


def test_authenticate_unknown_mechanism_is_refused(shared_cluster):
    r = shared_cluster.raw()
    try:
        r.send(b"a AUTHENTICATE CRAM-MD5\r\n")
        lines = r.read_until_tagged(b"a")
        assert re.match(rb"a (NO|BAD)", lines[-1]), lines
        r.send(b"n NOOP\r\n")
        assert r.read_until_tagged(b"n")[-1].startswith(b"n OK")
    finally:
        r.close()


# --------------------------------------------------------------------------- failures


def test_wrong_password_reply_passes_through_and_three_failures_disconnect(cluster, fleet):
    # Dovecot delays failed logins (auth_failure_delay plus a growing per-IP penalty), so the
    # proxy must wait longer than that for the backend's answer.
    d = cluster(proxy_timeout="30s")
    user = "user20"
    acc = d.cli_json("user", "access", user)[0]
    backend = next(b for b in fleet.backends if b.name == acc["backend"])

    def direct_wrong_login():
        """What the backend itself answers to this wrong login."""
        direct = RawIMAP(backend.ports["imap"], host=backend.ip, source_ip="127.0.0.63",
                         timeout=40)
        try:
            direct.send(f"a LOGIN {user} wrong-password\r\n".encode())
            return direct.read_until_tagged(b"a")[-1]
        finally:
            direct.close()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        direct_future = pool.submit(direct_wrong_login)  # runs while we try through the proxy
        replies = []
        r = d.raw(source_ip="127.0.0.64", timeout=40)
        try:
            for _ in (1, 2):
                r.send(f"a LOGIN {user} wrong-password\r\n".encode())
                replies.append(r.read_until_tagged(b"a")[-1])
                r.send(b"n NOOP\r\n")  # still usable after a failure
                assert r.read_until_tagged(b"n")[-1].startswith(b"n OK"), replies
            r.send(f"a LOGIN {user} wrong-password\r\n".encode())
            last = r.read_to_eof(timeout=40)
        finally:
            r.close()
        direct_reply = direct_future.result(timeout=60)
    assert direct_reply.startswith(b"a NO [AUTHENTICATIONFAILED]"), direct_reply
    assert replies == [direct_reply, direct_reply], (replies, direct_reply)
    assert last.startswith(direct_reply), last
    assert b"* BYE" in last[len(direct_reply):], last
    m = d.metrics()
    assert m['mailcluster_logins_total{result="failed"}'] == 3, m
    assert m['mailcluster_logins_total{result="ok"}'] == 0, m


def test_garbage_gets_bad_until_the_limit_then_bye(shared_cluster):
    rnd = random.Random(1234)
    junk = [
        b"\x00\x01\x02\x03\r\n",
        b"\xff\xfe\xfd\xfc garbage\r\n",
        bytes(rnd.choice([b for b in range(256) if b not in b"\r\n{}"])
              for _ in range(300)) + b"\r\n",
        b"\r\n",
        b")))(((\r\n",
        b"a FROBNICATE\r\n",
        b"a SELECT INBOX\r\n",
        b"a FETCH 1:* BODY[]\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n",  # TLS ClientHello-ish
    ]
    assert len(junk) == 9
    r = shared_cluster.raw()
    try:
        for j in junk:
            r.send(j)
            line = r.readline()
            assert re.match(rb"^\S+ BAD ", line), (j, line)
            # still usable
            r.send(b"n NOOP\r\n")
            assert r.read_until_tagged(b"n")[-1].startswith(b"n OK"), j
        r.send(b"z JUNK\r\n")  # the 10th bad command
        data = r.read_to_eof()
    finally:
        r.close()
    assert b"* BYE" in data, data


OVERSIZED = {
    "plain_line": b"a LOGIN " + b"x" * 20000,                                 # no CRLF at all
    "long_line_with_crlf": b"a LOGIN user1 " + b"x" * 20000 + b"\r\n",
    "literal_plus": b"a LOGIN {20000+}\r\n" + b"x" * 20000 + b" password\r\n",
    "huge_literal_announced": b"a LOGIN {100000}\r\n",
    "sasl_response": b"a AUTHENTICATE PLAIN\r\n" + b"A" * 20000 + b"\r\n",
}


@pytest.mark.parametrize("kind", list(OVERSIZED))
def test_oversized_input_gets_bye_and_close(shared_cluster, kind):
    r = shared_cluster.raw()
    try:
        try:
            r.send(OVERSIZED[kind])
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = r.read_to_eof()
    finally:
        r.close()
    assert b"* BYE Line too long" in data, data
    assert b"OK" not in data.replace(b"+ OK", b""), data  # nothing was logged in
    # the daemon is fine afterwards
    r = shared_cluster.raw()
    try:
        r.send(b"n NOOP\r\n")
        assert r.read_until_tagged(b"n")[-1].startswith(b"n OK")
    finally:
        r.close()


def test_pipelined_commands_around_login(shared_cluster):
    """Pre-login commands, the login and post-login commands in one write are answered in
    order: the front-end answers the first ones, the backend the rest."""
    r = shared_cluster.raw()
    try:
        r.send(b"a CAPABILITY\r\nb ID NIL\r\nc LOGIN user22 password\r\n"
               b"d SELECT INBOX\r\ne ID NIL\r\nf LOGOUT\r\n")
        data = r.read_to_eof(timeout=15)
    finally:
        r.close()
    tags = [l.split(b" ", 1)[0] for l in data.split(b"\r\n") if l and not l.startswith(b"*")]
    assert tags == [b"a", b"b", b"c", b"d", b"e", b"f"], data
    pre, post = data.split(b"\r\nc OK", 1)
    assert b'* ID ("name" "mailcluster")' in pre, pre
    assert re.search(rb'\* ID \("name" "backend\d"\)', post), post
    assert re.search(rb"\* \d+ EXISTS", post) and b"* BYE" in post, post


def test_failed_login_then_pipelined_commands_still_answered(shared_cluster):
    r = shared_cluster.raw(source_ip="127.0.0.65", timeout=40)
    try:
        r.send(b"a AUTHENTICATE PLAIN !!notbase64!!\r\nb NOOP\r\nc LOGIN user23 password\r\n")
        assert r.read_until_tagged(b"a")[-1].startswith(b"a NO"), "bad SASL accepted"
        assert r.read_until_tagged(b"b")[-1].startswith(b"b OK")
        _assert_logged_in(r.read_until_tagged(b"c"), b"c")
    finally:
        r.close()


def test_client_limit_refuses_extra_connections(cluster):
    d = cluster(client_limit=3)
    held = [d.raw() for _ in range(2)]
    session = d.login("user24")  # a proxied session counts too
    try:
        extra = socket.create_connection(("127.0.0.1", d.imap_port), timeout=10)
        try:
            data = b""
            while True:
                try:
                    chunk = extra.recv(4096)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                data += chunk
        finally:
            extra.close()
        assert not data.startswith(b"* OK"), data
        assert data == b"" or data.startswith(b"* BYE"), data
        assert d.metrics()["mailcluster_connections_refused_total"] == 1
        held.pop().close()
        wait_for(lambda: d.status()["clients"] == 2, 10, message="a slot to free up")
        r = d.raw()
        try:
            assert r.greeting.startswith(b"* OK")
        finally:
            r.close()
    finally:
        for h in held:
            h.close()
        close_quietly(session)


def test_connect_and_close_immediately_costs_nothing(cluster):
    d = cluster()
    before = d.metrics()["mailcluster_connections_total"]
    for i in range(60):
        s = socket.create_connection(("127.0.0.1", d.imap_port), timeout=5)
        if i % 2:
            # abortive close: RST instead of FIN
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    wait_for(lambda: d.metrics()["mailcluster_connections_total"] >= before + 60, 10,
             message="60 connections counted")
    wait_for(lambda: d.status()["clients"] == 0, 10, message="client count back to 0")
    c = d.login("user21")
    try:
        assert c.select("INBOX")[0] == "OK"
        assert d.status()["clients"] == 1 and d.status()["sessions"] == 1
    finally:
        close_quietly(c)
    wait_for(lambda: d.status() == {**d.status(), "clients": 0, "sessions": 0}, 10,
             message="clients and sessions back to 0 after logout")
