"""What the backend and the admin API see: real client address, who, kick, metrics, status."""

from __future__ import annotations

import imaplib
import json
import re
import threading

import pytest

from mchelpers import backend_of, close_quietly, unverified_ssl_context, wait_for


def _backend(fleet, name):
    return next(b for b in fleet.backends if b.name == name)


def test_backend_sees_the_real_client_address(cluster, fleet):
    d = cluster()
    user = "user41"
    c = d.login(user, source_ip="127.0.0.50")
    try:
        name = backend_of(c)
    finally:
        close_quietly(c)
    m = wait_for(lambda: re.search(
        r"event=login result=ok protocol=imap user=user41 .*client=127\.0\.0\.50:\d+ session=(\S+)",
        d.log_text()), 5, message="the daemon's login line")
    session = m.group(1)
    backend = _backend(fleet, name)
    line = wait_for(lambda: re.search(
        rf"imap-login: Info: Login: user=<{user}>, method=PLAIN, rip=127\.0\.0\.50, .*"
        rf"session=<{re.escape(session)}>", backend.log_text()),
        10, message=f"rip=127.0.0.50 for {user} in {name}'s log")
    assert line


def test_who_lists_session_and_kick_ends_it(cluster):
    d = cluster()
    user = "user42"
    c = d.login(user, source_ip="127.0.0.51")
    kicked = False
    try:
        name = backend_of(c)
        local_port = c.sock.getsockname()[1]

        rows = d.cli_json("who")
        mine = [r for r in rows if r["user"] == user]
        assert len(mine) == 1, rows
        assert mine[0]["backend"] == name, mine
        assert mine[0]["client"] == f"127.0.0.51:{local_port}", mine
        assert mine[0]["protocol"] == "imap"
        assert d.cli_json("who", user) == mine
        assert d.cli_json("who", "user1") == []

        code, body = d.http("GET", "/api/who")
        assert code == 200
        sessions = json.loads(body)["sessions"]
        assert [(s["user"], s["backend"], s["client"]) for s in sessions] == \
            [(user, name, f"127.0.0.51:{local_port}")], sessions
        assert sessions[0]["session"] in d.log_text()
        assert d.status()["sessions"] == 1

        r = d.cli("kick", user)
        assert r.returncode == 0, r.stderr
        assert "1" in r.stdout, r.stdout
        kicked = True
        # The client gets "* BYE" and then the connection closes.
        c.sock.settimeout(10)
        line = c.readline()
        assert line.startswith(b"* BYE"), line
        assert c.readline() == b"", "connection still open after the BYE"
    finally:
        if not kicked:
            close_quietly(c)
        else:
            c.shutdown()
    assert d.cli_json("who") == []
    wait_for(lambda: d.status()["sessions"] == 0 and d.status()["clients"] == 0, 10,
             message="no sessions after kick")
    assert d.metrics()["mailcluster_sessions_kicked_total"] == 1


def test_kick_only_the_named_user(cluster):
    d = cluster()
    a1, a2, b = d.login("user43"), d.login("user43"), d.login("user44")
    try:
        assert len(d.cli_json("who", "user43")) == 2
        r = d.cli("kick", "user43")
        assert r.returncode == 0 and "2" in r.stdout, (r.stdout, r.stderr)
        for c in (a1, a2):
            c.sock.settimeout(10)
            assert c.readline().startswith(b"* BYE")
        # user44 is untouched and still works
        assert b.noop()[0] == "OK"
        assert [r["user"] for r in d.cli_json("who")] == ["user44"]
    finally:
        for c in (a1, a2):
            c.shutdown()
        close_quietly(b)


def test_kick_over_tls_session(cluster):
    d = cluster(tls=True)
    c = imaplib.IMAP4_SSL("127.0.0.1", d.imaps_port, ssl_context=unverified_ssl_context(),
                          timeout=20)
    try:
        assert c.login("user45", "password")[0] == "OK"
        assert d.cli("kick", "user45").returncode == 0
        c.sock.settimeout(10)
        assert c.readline().startswith(b"* BYE")
        assert c.readline() == b""
    finally:
        c.shutdown()


def test_metrics_count_logins(cluster):
    d = cluster()
    ok = 'mailcluster_logins_total{result="ok"}'
    before = d.metrics()
    assert before[ok] == 0
    for u in ("user46", "user47", "user46"):
        close_quietly(d.login(u))
    after = wait_for(lambda: (m := d.metrics())[ok] == before[ok] + 3 and m, 5,
                     message="3 more ok logins in /metrics")
    assert after["mailcluster_connections_total"] >= before["mailcluster_connections_total"] + 3
    assert after["mailcluster_group_assignments_total"] >= 1
    wait_for(lambda: d.metrics()["mailcluster_sessions_ended_total"] == 3, 5,
             message="3 ended sessions")
    # bytes of ended sessions are counted
    m = d.metrics()
    assert m['mailcluster_relayed_bytes_total{direction="to_client"}'] > 0, m
    assert m['mailcluster_relayed_bytes_total{direction="to_backend"}'] > 0, m


def test_admin_status_and_unknown_path(cluster):
    d = cluster()
    st = d.status()
    assert st["site"] == "dc1" and st["clients"] == 0 and st["sessions"] == 0, st
    c = d.login("user48")
    try:
        st = d.status()
        assert st["clients"] == 1 and st["sessions"] == 1, st
    finally:
        close_quietly(c)
    code, body = d.http("GET", "/api/who?user=user48")
    assert code == 200 and json.loads(body)["sessions"] == [], body
    code, body = d.http("POST", "/api/kick")
    assert code == 400, (code, body)
    code, body = d.http("GET", "/no/such/thing")
    assert code == 404, (code, body)
    code, body = d.http("GET", "/api/kick?user=user48")
    assert code == 405, (code, body)


def test_who_and_kick_without_daemon_are_refused(cluster):
    d = cluster(start=False)
    for args in (("who",), ("kick", "user1")):
        r = d.cli(*args)
        assert r.returncode == 1, (args, r.returncode, r.stdout, r.stderr)
        assert "admin" in r.stderr or "daemon" in r.stderr, r.stderr


def _check_fetch_stream(data: bytes, msg: bytes) -> int:
    """Walk IMAP responses; every complete literal must equal msg, a literal cut short by the
    close must be a prefix of msg. Returns the number of complete literals."""
    pos, full = 0, 0
    while pos < len(data):
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            break
        line = data[pos:eol]
        m = re.search(rb"\{(\d+)\}$", line)
        if not m:
            pos = eol + 2
            continue
        n = int(m.group(1))
        lit = data[eol + 2:eol + 2 + n]
        if len(lit) == n:
            intact = lit == msg
            assert intact, f"literal at byte {pos} corrupted ('* BYE' at {lit.find(b'* BYE')})"
            full += 1
        else:
            intact = msg.startswith(lit)
            assert intact, (f"partial literal at byte {pos} corrupted: '* BYE' at offset "
                            f"{lit.find(b'* BYE')} of the literal; stream tail {data[-100:]!r}")
        pos = eol + 2 + n
    return full


@pytest.mark.parametrize("tls", [False, True], ids=["splice", "tls"])
def test_kick_during_a_large_response_does_not_corrupt_it(cluster, tls):
    """Kick while the backend's answer is streaming: the session must end, and the BYE must not
    land inside a FETCH literal (the client would see it as message content)."""
    d = cluster(tls=tls)
    user = "user49" if not tls else "user51"
    msg = (b"From: kick test <k@example.com>\r\nSubject: big\r\n\r\n" +
           b"".join(b"line %06d 0123456789abcdefghijklmnopqrstuvwxyz0123456789\r\n" % i
                    for i in range(16000)))
    c = d.login(user)
    try:
        c.select("INBOX")
        typ, data = c.append("INBOX", None, None, msg)
        uid = int(re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1))
    finally:
        close_quietly(c)

    for attempt in range(3):
        r = d.raw(timeout=30, tls=tls)
        try:
            r.send(f"a LOGIN {user} password\r\ns SELECT INBOX\r\n".encode())
            r.read_until_tagged(b"a")
            r.read_until_tagged(b"s")
            r.send(b"".join(b"f%d UID FETCH %d BODY.PEEK[]\r\n" % (i, uid) for i in range(60)))
            got = bytearray()
            started = threading.Event()

            def reader():
                try:
                    while chunk := r.sock.recv(262144):
                        got.extend(chunk)
                        if len(got) > 3_000_000:
                            started.set()
                except OSError:
                    pass
                finally:
                    started.set()

            t = threading.Thread(target=reader)
            t.start()
            assert started.wait(30)
            at_kick = bytes(got)
            assert d.cli("kick", user).returncode == 0
            t.join(30)
            assert not t.is_alive(), "connection not closed after kick"
        finally:
            r.close()
        # the kick must have come while responses were still streaming ...
        assert _check_fetch_stream(at_kick, msg) < 60, \
            f"attempt {attempt}: the kick came too late to test anything"
        # ... and whatever arrived, up to the close, is intact: the proxy stops
        # forwarding commands, lets the backend finish what it was sending, and says
        # BYE only between responses (or closes without it)
        data = bytes(got)
        _check_fetch_stream(data, msg)
        bye = data.find(b"* BYE")
        if bye >= 0:
            assert bye == 0 or data[bye - 2:bye] == b"\r\n", "BYE not at a line start"
            assert data.endswith(b"\r\n"), "stream cut after the BYE"
    wait_for(lambda: d.status()["sessions"] == 0, 10, message="no sessions after kicks")


def test_starttls_refused_without_tls_config(cluster):
    d = cluster()  # no tls_cert
    r = d.raw()
    try:
        assert b"STARTTLS" not in r.greeting, r.greeting
        r.send(b"t STARTTLS\r\n")
        reply = r.read_until_tagged(b"t")[-1]
        assert re.match(rb"t (BAD|NO) ", reply), reply
        r.send(b"a LOGIN user50 password\r\n")
        assert r.read_until_tagged(b"a")[-1].startswith(b"a OK")
    finally:
        r.close()
