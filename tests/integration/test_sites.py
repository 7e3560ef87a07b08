"""Routing across sites: a daemon that gets a user whose group lives in another site sends the
session to that site's load balancer (here: the other site's daemon), never to the other site's
backends; a forwarded session is never forwarded again (loop prevention).

Two daemons, one per site (dc1, dc2), share one SQLite GeoDB; the fleet is split: backend1 and
backend2 in dc1, backend3 in dc2.  Each site's load balancer address is the other daemon's
per-protocol listeners (imap=...,pop3=...,lmtp=...).  Users: user286..user293 (no other test
file touches them).
"""

from __future__ import annotations

import os
import poplib
import re
import socket
import subprocess

from mchelpers import backend_of, close_quietly, imap_connect, wait_for

PROTOCOLS = ("imap", "pop3", "lmtp", "sieve", "submission")
TRUSTED = "127.0.0.0/8"


# --------------------------------------------------------------------------- helpers


def lb_spec(d) -> str:
    return ",".join(f"{p}=127.0.0.1:{d.ports[p]}" for p in PROTOCOLS if p in d.ports)


def cli_ok(d, *args):
    r = d.cli(*args)
    assert r.returncode == 0, f"mailcluster {' '.join(args)}: {r.stderr}"
    return r


def setup_sites(d, fleet, dc1_backends=("backend1", "backend2"), dc2_backends=("backend3",)):
    """Sites dc1 and dc2 in d's GeoDB, the fleet split between them, all online."""
    cli_ok(d, "site", "add", "dc1")
    cli_ok(d, "site", "add", "dc2")
    for name in dc1_backends + dc2_backends:
        site = "dc1" if name in dc1_backends else "dc2"
        cli_ok(d, "backend", "add", "--site", site, name, fleet.backend(name).ip)
        cli_ok(d, "backend", "update", "--status", "online", name)


def two_sites(cluster, fleet, **settings):
    """(dc1 daemon, dc2 daemon) on one SQLite GeoDB, each site's load balancer the other
    daemon."""
    d1 = cluster(setup=False, start=False, protocols=PROTOCOLS, site="dc1",
                 login_trusted_networks=TRUSTED, **settings)
    d2 = cluster(geodb=d1.geodb_path, setup=False, start=False, protocols=PROTOCOLS,
                 site="dc2", login_trusted_networks=TRUSTED, **settings)
    setup_sites(d1, fleet)
    cli_ok(d1, "site", "update", "--load-balancer", lb_spec(d1), "dc1")
    cli_ok(d1, "site", "update", "--load-balancer", lb_spec(d2), "dc2")
    d1.start()
    d2.start()
    return d1, d2


def group_of(d, user: str) -> str:
    return d.cli_json("user", "status", user)[0]["group"]


def place(d, user: str, backend: str) -> None:
    cli_ok(d, "group", "move", "--direct", group_of(d, user), backend)


def login_line(d, protocol: str, user: str) -> re.Match:
    """The daemon's latest event=login result=ok line for user."""
    matches = list(re.finditer(
        rf"event=login result=ok protocol={protocol} user={user} group=\d+ backend=(\S+) "
        rf"address=(\S+)(?: via_site=(\S+))? client=\S+ session=(\S+)", d.log_text()))
    assert matches, f"no login of {user} ({protocol}) in {d.name}'s log"
    return matches[-1]


def tcp_peers(pid: int) -> list[str]:
    """The remote addresses (ip:port) of pid's TCP connections."""
    out = subprocess.run(["ss", "-tnpH"], capture_output=True, text=True, check=True).stdout
    peers = []
    for line in out.splitlines():
        if f"pid={pid}," in line:
            fields = line.split()
            peers.append(fields[4])
    return peers


def mail_count(backend, user: str) -> int:
    base = os.path.join(backend.dir, "mail", user)
    return sum(len(os.listdir(os.path.join(base, sub))) for sub in ("new", "cur")
               if os.path.isdir(os.path.join(base, sub)))


def lmtp_deliver(d, rcpts: list[str]) -> tuple[list[bytes], list[bytes]]:
    """One LMTP transaction through d: (RCPT replies, DATA replies), first lines."""
    import socket
    s = socket.create_connection(("127.0.0.1", d.ports["lmtp"]), timeout=30)
    f = s.makefile("rb")

    def reply() -> bytes:
        first = None
        while True:
            line = f.readline()
            assert line, "LMTP connection closed"
            first = first or line
            if line[3:4] != b"-":
                return first

    try:
        assert reply().startswith(b"220")
        s.sendall(b"LHLO mta.example.com\r\n")
        assert reply().startswith(b"250")
        s.sendall(b"MAIL FROM:<sender@example.com>\r\n")
        assert reply().startswith(b"250")
        rcpt_replies = []
        for r in rcpts:
            s.sendall(b"RCPT TO:<" + r.encode() + b">\r\n")
            rcpt_replies.append(reply())
        accepted = sum(1 for r in rcpt_replies if r.startswith(b"2"))
        data_replies = []
        if accepted:
            s.sendall(b"DATA\r\n")
            assert reply().startswith(b"354")
            s.sendall(b"Subject: sites\r\nFrom: <sender@example.com>\r\n\r\nHello.\r\n.\r\n")
            data_replies = [reply() for _ in range(accepted)]
        s.sendall(b"QUIT\r\n")
        return rcpt_replies, data_replies
    finally:
        s.close()


def imap_login_reply(d, user: str) -> bytes:
    """The tagged reply to LOGIN through d (the connection is closed afterwards)."""
    c = imap_connect(d.imap_port)
    try:
        typ, data = c._simple_command("LOGIN", user, "password")
        return b"OK" if typ == "OK" else data[-1] if data else b""
    except Exception as e:  # imaplib raises on NO
        return str(e).encode()
    finally:
        close_quietly(c)


# --------------------------------------------------------------------------- tests


def _log_marks(fleet) -> dict:
    """Where each backend's log ends now: the fleet's Dovecots live for the whole test
    session, so what earlier tests logged must not count."""
    return {b.name: len(b.log_text()) for b in fleet.backends}


def _log_since(fleet, name: str, marks: dict) -> str:
    return fleet.backend(name).log_text()[marks[name]:]


def test_imap_user_of_another_site_goes_through_its_load_balancer(cluster, fleet):
    d1, d2 = two_sites(cluster, fleet)
    marks = _log_marks(fleet)
    user = "user286"
    place(d1, user, "backend3")  # dc2
    c = d1.login(user)
    try:
        assert backend_of(c) == "backend3"
        # while the session is open: dc1's daemon is connected to dc2's daemon, not to
        # backend3 itself
        peers = tcp_peers(d1.proc.pid)
        assert f"127.0.0.1:{d2.ports['imap']}" in peers, peers
        assert not any(p.startswith(fleet.backend("backend3").ip + ":") for p in peers), peers
    finally:
        close_quietly(c)
    m1 = login_line(d1, "imap", user)
    assert m1.group(1) == "backend3" and m1.group(3) == "dc2", m1.group(0)
    assert m1.group(2) == f"127.0.0.1:{d2.ports['imap']}", m1.group(0)
    m2 = login_line(d2, "imap", user)
    assert m2.group(1) == "backend3" and m2.group(3) is None, m2.group(0)
    assert m2.group(2).startswith(fleet.backend("backend3").ip + ":"), m2.group(0)
    # one session id from the client's daemon to the backend
    session = m1.group(4)
    assert m2.group(4) == session
    assert f"event=forward_accepted protocol=imap peer=127.0.0.1 client=127.0.0.1" in \
        d2.log_text()
    wait_for(lambda: re.search(rf"imap-login: .*Login: user=<{user}>.*session=<{re.escape(session)}>",
                               fleet.backend("backend3").log_text()), 10,
             message="backend3 to log the login with dc1's session id")
    # dc1's own backends never saw the user
    for b in ("backend1", "backend2"):
        assert f"user=<{user}>" not in _log_since(fleet, b, marks)

    # a user of dc1 stays in dc1, directly
    local = "user287"
    place(d1, local, "backend1")
    c = d1.login(local)
    try:
        assert backend_of(c) == "backend1"
    finally:
        close_quietly(c)
    m = login_line(d1, "imap", local)
    assert m.group(3) is None and m.group(2).startswith(fleet.backend("backend1").ip + ":")

    # ... and the other way round: dc2's daemon sends dc1's user to dc1's daemon
    c = d2.login(local)
    try:
        assert backend_of(c) == "backend1"
    finally:
        close_quietly(c)
    assert login_line(d2, "imap", local).group(3) == "dc1"

    st1, st2 = d1.status()["sites"], d2.status()["sites"]
    assert st1["forwards"] == 1 and st1["forwarded_in"] == 1, st1
    assert st2["forwards"] == 1 and st2["forwarded_in"] == 1, st2
    assert st1["loops_refused"] == 0 and st2["loops_refused"] == 0
    assert d1.metrics()["mailcluster_site_forwards_total"] == 1


def test_pop3_sieve_submission_go_through_the_load_balancer(cluster, fleet):
    d1, d2 = two_sites(cluster, fleet)
    marks = _log_marks(fleet)
    user = "user288"
    place(d1, user, "backend3")
    p = poplib.POP3("127.0.0.1", d1.ports["pop3"], timeout=20)
    try:
        p.user(user)
        assert p.pass_("password").startswith(b"+OK")
        count, _ = p.stat()
        assert count >= 1
    finally:
        p.quit()
    m1 = login_line(d1, "pop3", user)
    assert m1.group(1) == "backend3" and m1.group(3) == "dc2"
    assert m1.group(2) == f"127.0.0.1:{d2.ports['pop3']}"
    m2 = login_line(d2, "pop3", user)
    assert m2.group(2).startswith(fleet.backend("backend3").ip + ":") and m2.group(4) == \
        m1.group(4)
    wait_for(lambda: re.search(rf"pop3-login: .*Login: user=<{user}>.*session=<{re.escape(m1.group(4))}>",
                               fleet.backend("backend3").log_text()), 10,
             message="backend3 to log the POP3 login")

    # ManageSieve: AUTHENTICATE through dc1 ends on backend3
    import base64
    import socket
    s = socket.create_connection(("127.0.0.1", d1.ports["sieve"]), timeout=20)
    f = s.makefile("rb")
    while not f.readline().startswith(b"OK"):
        pass
    ir = base64.b64encode(b"\0" + user.encode() + b"\0password").decode()
    s.sendall(f'AUTHENTICATE "PLAIN" "{ir}"\r\n'.encode())
    line = f.readline()
    assert line.startswith(b"OK"), line
    s.sendall(b"LOGOUT\r\n")
    s.close()
    assert login_line(d1, "sieve", user).group(3) == "dc2"
    assert login_line(d2, "sieve", user).group(1) == "backend3"

    # Submission: AUTH through dc1 ends on backend3
    import smtplib
    smtp = smtplib.SMTP("127.0.0.1", d1.ports["submission"], timeout=20)
    try:
        smtp.ehlo("client.example.com")
        code, _ = smtp.login(user, "password")
        assert code == 235
    finally:
        try:
            smtp.quit()
        except Exception:
            pass
    assert login_line(d1, "submission", user).group(3) == "dc2"
    assert login_line(d2, "submission", user).group(1) == "backend3"
    assert f"user=<{user}>" not in _log_since(fleet, "backend1", marks)


def test_lmtp_recipient_of_another_site_is_delivered_there(cluster, fleet):
    d1, d2 = two_sites(cluster, fleet, lmtp_username="localpart")
    remote, local = "user289", "user290"
    place(d1, remote, "backend3")
    place(d1, local, "backend2")
    before = {(u, b.name): mail_count(b, u) for u in (remote, local) for b in fleet.backends}
    rcpt, data = lmtp_deliver(d1, [f"{remote}@example.com", f"{local}@example.com"])
    assert all(r.startswith(b"250") for r in rcpt), rcpt
    assert len(data) == 2 and all(r.startswith(b"250") for r in data), data
    after = {(u, b.name): mail_count(b, u) for u in (remote, local) for b in fleet.backends}
    changed = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    assert changed == {(remote, "backend3"): 1, (local, "backend2"): 1}, changed
    log1, log2 = d1.log_text(), d2.log_text()
    assert re.search(rf"event=lmtp_rcpt stage=data user={remote}@example.com group=\d+ "
                     rf"backend=site:dc2 result=delivered", log1) or \
        re.search(rf"event=lmtp_rcpt stage=data user={remote} group=\d+ "
                  rf"backend=site:dc2 result=delivered", log1), log1[-3000:]
    assert re.search(rf"event=lmtp_rcpt stage=data user={remote} group=\d+ backend=backend3 "
                     rf"result=delivered", log2), log2[-3000:]
    assert "event=forward_accepted protocol=lmtp" in log2
    # dc1 never connected to backend3 itself: its only LMTP connection for the remote
    # recipient is to dc2's daemon, whose session id reaches backend3's log
    assert not re.search(r"event=lmtp_\S+ .*backend=backend3", log1)
    session = re.search(rf"event=lmtp_rcpt stage=data user={remote}\S* group=\d+ "
                        rf"backend=site:dc2 result=delivered client=\S+ session=(\S+)",
                        log1).group(1)
    assert re.search(rf"session={re.escape(session)}", log2)
    wait_for(lambda: f"lmtp({remote})<" in fleet.backend("backend3").log_text() and
             f"><{session}>" in fleet.backend("backend3").log_text(), 10,
             message="backend3 to log the delivery with dc1's session id")


def test_no_load_balancer_or_site_down_is_a_temporary_failure(cluster, fleet):
    d1, d2 = two_sites(cluster, fleet, lmtp_username="localpart")
    user = "user291"
    place(d1, user, "backend3")
    cli_ok(d1, "site", "update", "--load-balancer", "", "dc2")
    # IMAP: NO [UNAVAILABLE]
    reply = imap_login_reply(d1, user)
    assert b"UNAVAILABLE" in reply, reply
    wait_for(lambda: re.search(rf"event=login result=unavailable protocol=imap user={user} .*"
                               rf"reason=\"group \d+ lives in site dc2, which has no load "
                               rf"balancer address", d1.log_text()), 5,
             message="the unavailable login line")
    # POP3: -ERR [SYS/TEMP]
    p = poplib.POP3("127.0.0.1", d1.ports["pop3"], timeout=20)
    try:
        p.user(user)
        try:
            p.pass_("password")
            raise AssertionError("POP3 login through a site without a load balancer worked")
        except poplib.error_proto as e:
            assert b"[SYS/TEMP]" in e.args[0], e
    finally:
        p.close()
    # LMTP: 451
    rcpt, _ = lmtp_deliver(d1, [f"{user}@example.com"])
    assert rcpt[0].startswith(b"451"), rcpt
    # nothing reached dc2's daemon
    assert f"user={user}" not in d2.log_text()

    # a load balancer without this protocol: the others still work
    cli_ok(d1, "site", "update", "--load-balancer", f"pop3=127.0.0.1:{d2.ports['pop3']}", "dc2")
    reply = imap_login_reply(d1, user)
    assert b"UNAVAILABLE" in reply, reply
    assert re.search(r"whose load balancer address 'pop3=127.0.0.1:\d+' has no imap address",
                     d1.log_text())

    # site standby: UNAVAILABLE even with a load balancer
    cli_ok(d1, "site", "update", "--load-balancer", lb_spec(d2), "dc2")
    cli_ok(d1, "site", "update", "--status", "standby", "dc2")
    reply = imap_login_reply(d1, user)
    assert b"UNAVAILABLE" in reply, reply
    assert re.search(rf"user={user} .*reason=\"group \d+ lives in site dc2, which is standby",
                     d1.log_text())
    assert d1.status()["sites"]["unavailable"] >= 3
    # online again: it works
    cli_ok(d1, "site", "update", "--status", "online", "dc2")
    c = d1.login(user)
    try:
        assert backend_of(c) == "backend3"
    finally:
        close_quietly(c)


def test_single_address_load_balancer_serves_every_protocol_at_one_port(cluster, fleet):
    d1, d2 = two_sites(cluster, fleet)
    user = "user286"
    place(d1, user, "backend3")
    cli_ok(d1, "site", "update", "--load-balancer", f"127.0.0.1:{d2.ports['imap']}", "dc2")
    c = d1.login(user)
    try:
        assert backend_of(c) == "backend3"
    finally:
        close_quietly(c)
    assert login_line(d1, "imap", user).group(2) == f"127.0.0.1:{d2.ports['imap']}"
    # POP3 goes to the same port, where IMAP answers: a temporary failure, not a login
    p = poplib.POP3("127.0.0.1", d1.ports["pop3"], timeout=20)
    try:
        p.user(user)
        try:
            p.pass_("password")
            raise AssertionError("POP3 worked against an IMAP port")
        except poplib.error_proto as e:
            assert b"[SYS/TEMP]" in e.args[0], e
    finally:
        p.close()
    assert re.search(rf"event=login result=unavailable protocol=pop3 user={user} group=\d+ "
                     rf"backend=backend3 via_site=dc2 address=127\.0\.0\.1:{d2.ports['imap']} "
                     rf".*greeting was not \+OK", d1.log_text())


def test_forwarding_needs_login_trusted_networks_on_the_other_side(cluster, fleet):
    d1 = cluster(setup=False, start=False, protocols=PROTOCOLS, site="dc1",
                 login_trusted_networks=TRUSTED)
    d2 = cluster(geodb=d1.geodb_path, setup=False, start=False, protocols=PROTOCOLS,
                 site="dc2")  # trusts nobody
    setup_sites(d1, fleet)
    cli_ok(d1, "site", "update", "--load-balancer", lb_spec(d2), "dc2")
    d1.start()
    d2.start()
    user = "user292"
    place(d1, user, "backend3")
    reply = imap_login_reply(d1, user)
    assert b"UNAVAILABLE" in reply, reply
    assert re.search(r"did not take our forwarding \(x-mailcluster-hops\): is this host in the "
                     r"other site's login_trusted_networks", d1.log_text())
    assert "event=forward_refused protocol=imap" in d2.log_text()
    # the credentials never went to dc2's daemon
    assert f"user={user}" not in d2.log_text()


def _read_reply(f, last) -> list[bytes]:
    """Lines from f up to and including the one for which last(line) holds."""
    lines = []
    while True:
        line = f.readline()
        assert line, f"connection closed after {lines}"
        lines.append(line)
        if last(line):
            return lines


def test_xclient_from_an_untrusted_peer_is_refused_in_every_protocol(cluster, fleet):
    """XCLIENT (how another site's daemon forwards a client) from a peer not in
    login_trusted_networks: the protocol's own refusal, and
    event=forward_refused is logged."""
    d = cluster(protocols=PROTOCOLS)  # trusts nobody
    smtp_final = lambda line: line[3:4] == b" "  # noqa: E731
    cases = (
        ("pop3", lambda line: line.startswith(b"+OK"), None,
         b"-ERR You aren't allowed to use XCLIENT.\r\n"),
        ("sieve", lambda line: line.startswith(b"OK"), None,
         b'NO "You aren\'t allowed to use XCLIENT."\r\n'),
        ("submission", smtp_final, b"EHLO client.example\r\n",
         b"502 5.5.1 Command not implemented\r\n"),
        ("lmtp", smtp_final, b"LHLO client.example\r\n",
         b"502 5.5.1 Command not implemented\r\n"),
    )
    for protocol, greeting_end, hello, refusal in cases:
        with socket.create_connection(("127.0.0.1", d.ports[protocol]), timeout=10) as s:
            port = s.getsockname()[1]
            f = s.makefile("rb")
            _read_reply(f, greeting_end)
            if hello:
                s.sendall(hello)
                _read_reply(f, smtp_final)
            s.sendall(b"XCLIENT ADDR=192.0.2.1 PORT=1234\r\n")
            assert f.readline() == refusal, protocol
        wait_for(lambda: re.search(
            rf"event=forward_refused protocol={protocol} peer=127\.0\.0\.1:{port} "
            rf'session=\S+ reason="XCLIENT from a peer not in login_trusted_networks"',
            d.log_text()), 10, message=f"{protocol}'s event=forward_refused")


def test_disagreeing_sites_refuse_a_loop(cluster, fleet):
    """dc1's GeoDB says the group is in dc2, dc2's says it is in dc1 (two GeoDB files: a
    replication delay or a split made real): the session goes dc1 -> dc2 once and is refused
    there, not sent back."""
    d1 = cluster(setup=False, start=False, protocols=PROTOCOLS, site="dc1",
                 login_trusted_networks=TRUSTED, lmtp_username="localpart")
    d2 = cluster(setup=False, start=False, protocols=PROTOCOLS, site="dc2",
                 login_trusted_networks=TRUSTED, lmtp_username="localpart")
    assert d1.geodb_path != d2.geodb_path
    for d in (d1, d2):
        setup_sites(d, fleet)
        cli_ok(d, "site", "update", "--load-balancer", lb_spec(d1), "dc1")
        cli_ok(d, "site", "update", "--load-balancer", lb_spec(d2), "dc2")
    user = "user293"
    place(d1, user, "backend3")  # dc1 believes: dc2
    place(d2, user, "backend1")  # dc2 believes: dc1
    d1.start()
    d2.start()

    reply = imap_login_reply(d1, user)
    assert b"UNAVAILABLE" in reply, reply
    wait_for(lambda: "event=route_loop protocol=imap" in d2.log_text(), 5,
             message="dc2 to log the refused loop")
    loop = re.search(r"event=route_loop protocol=imap user=(\S+) group=\d+ site=dc1 "
                     r"backend=backend1 client=127\.0\.0\.1:\d+ session=(\S+) hops=1 "
                     r"forwarded_by=127\.0\.0\.1", d2.log_text())
    assert loop and loop.group(1) == user, d2.log_text()[-3000:]
    # one hop only: dc1 never got it back, nobody reached a backend
    assert "event=forward_accepted" not in d1.log_text()
    assert "event=route_loop" not in d1.log_text()
    assert "event=login result=ok" not in d1.log_text() + d2.log_text()
    for b in fleet.backends:
        assert f"session=<{loop.group(2)}>" not in b.log_text()

    # POP3 and LMTP likewise
    p = poplib.POP3("127.0.0.1", d1.ports["pop3"], timeout=20)
    try:
        p.user(user)
        try:
            p.pass_("password")
            raise AssertionError("a looping POP3 login worked")
        except poplib.error_proto as e:
            assert b"[SYS/TEMP]" in e.args[0], e
    finally:
        p.close()
    rcpt, _ = lmtp_deliver(d1, [f"{user}@example.com"])
    assert rcpt[0].startswith(b"451"), rcpt
    wait_for(lambda: "event=route_loop protocol=lmtp" in d2.log_text(), 5,
             message="dc2 to refuse the LMTP loop")
    assert d2.status()["sites"]["loops_refused"] == 3
    assert d2.metrics()["mailcluster_route_loops_total"] == 3
    st1 = d1.status()["sites"]
    assert st1["loops_refused"] == 0 and st1["forwards"] == 0, st1
    # dc1 saw dc2's refusal as a temporary failure of the forward (IMAP, POP3, LMTP)
    assert st1["forwards_failed"] == 3, st1
    assert re.search(rf"event=login result=unavailable protocol=imap user={user} .*"
                     rf"reason=\"the load balancer 127\.0\.0\.1:{d2.ports['imap']} of site "
                     rf"dc2 answered: \S+ NO \[UNAVAILABLE\]", d1.log_text())


def test_site_direct_backends_connects_straight_to_the_backend(cluster, fleet):
    d1 = cluster(setup=False, start=False, protocols=("imap",), site="dc1",
                 site_direct_backends="yes")
    setup_sites(d1, fleet)
    d1.start()
    user = "user286"
    place(d1, user, "backend3")
    c = d1.login(user)
    try:
        assert backend_of(c) == "backend3"
    finally:
        close_quietly(c)
    m = login_line(d1, "imap", user)
    assert m.group(3) is None and m.group(2).startswith(fleet.backend("backend3").ip + ":")
    assert d1.status()["sites"]["direct_backends"] is True


def test_cli_load_balancer_values(cluster):
    d = cluster(setup=False, start=False)
    cli_ok(d, "site", "add", "--load-balancer", "10.0.0.5", "dc2")
    assert d.cli_json("site", "status", "dc2")[0]["load_balancer"] == "10.0.0.5"
    good = ["10.0.0.5:10143", "[2001:db8::1]:143", "[2001:db8::1]",
            "imap=10.0.0.5:143,pop3=10.0.0.5:110,lmtp=10.0.0.6:24,sieve=10.0.0.5,"
            "submission=10.0.0.5:587", "lmtp=10.0.0.6:24", ""]
    for value in good:
        cli_ok(d, "site", "update", "--load-balancer", value, "dc2")
        assert d.cli_json("site", "status", "dc2")[0]["load_balancer"] == value
    bad = {
        "lb.example.com": "is not an IP address",
        "10.0.0.5:0": "port '0' is not 1-65535",
        "10.0.0.5:99999": "port '99999' is not 1-65535",
        "10.0.0.5:imap": "port 'imap' is not 1-65535",
        "2001:db8::1:143": "an IPv6 address goes in brackets",
        "[2001:db8::1": "'[' without ']'",
        "10.0.0.5,10.0.0.6": "must each name their protocol",
        "imap=10.0.0.5,ftp=10.0.0.5": "unknown protocol 'ftp'",
        "imap=10.0.0.5,imap=10.0.0.6": "protocol 'imap' is given twice",
        "imap=10.0.0.5,": "ends with ','",
        "imap=": "empty",
        "imap=10.0.0.5,10.0.0.6": "expected PROTOCOL=HOST[:PORT]",
        "x" * 200: "longer than 127 characters",
    }
    for value, why in bad.items():
        r = d.cli("site", "update", "--load-balancer", value, "dc2")
        assert r.returncode == 1, (value, r.stdout, r.stderr)
        assert why in r.stderr and "site dc2" in r.stderr, (value, r.stderr)
    r = d.cli("site", "add", "--load-balancer", "nonsense", "dc3")
    assert r.returncode == 1 and "is not an IP address" in r.stderr, r.stderr
    assert all(s["site"] != "dc3" for s in d.cli_json("site", "list"))
    # the last good value stands
    assert d.cli_json("site", "status", "dc2")[0]["load_balancer"] == ""


def _reach(d, observer: str, target: str):
    for row in d.cli_json("site", "reachability", "list", observer):
        if row["target"] == target:
            return row
    return None


def test_each_sites_controller_beats_and_records_which_sites_it_reaches(cluster, fleet):
    """Every site's controller writes its site's heartbeat each pass and records, per other
    site, whether that site's newest heartbeat is within site_reachability_timeout: dc1 sees
    dc2 go silent when dc2's only daemon stops, and come back when it starts again."""
    d1, d2 = two_sites(cluster, fleet, probe_interval="1s", controller_lease="3s",
                       site_reachability_timeout="3s")
    for obs, tgt in (("dc1", "dc2"), ("dc2", "dc1")):
        wait_for(lambda: (lambda r: r and r["reachable"] == "yes")(_reach(d1, obs, tgt)), 30,
                 interval=0.5, message=f"{obs}'s controller to see {tgt} reachable")
    assert d1.status()["controller"]["site_heartbeats"] > 0
    assert d2.metrics()["mailcluster_site_heartbeats_total"] > 0
    before = _reach(d1, "dc1", "dc2")

    d2.stop()
    row = wait_for(lambda: (lambda r: r if r and r["reachable"] == "no" else None)(
        _reach(d1, "dc1", "dc2")), 30, interval=0.5,
        message="dc1's controller to see dc2 unreachable once dc2's daemon stopped")
    assert row["since"] != before["since"], (before, row)
    assert re.search(r'event=site_reachability observer=dc1 target=dc2 reachable=no '
                     r'reason="newest heartbeat [\d.]+ s old \(site_reachability_timeout 3 s\)"',
                     d1.log_text()), d1.log_text()[-3000:]
    # dc2's own record about dc1 is left as dc2 last wrote it (nobody writes for dc2 now)
    assert _reach(d1, "dc2", "dc1")["reachable"] == "yes"

    d2.start()
    wait_for(lambda: (lambda r: r and r["reachable"] == "yes")(_reach(d1, "dc1", "dc2")), 30,
             interval=0.5, message="dc1's controller to see dc2 reachable again")
    assert re.search(r"event=site_reachability observer=dc1 target=dc2 reachable=yes",
                     d1.log_text())
    assert d1.metrics()["mailcluster_site_reachability_changes_total"] >= 2
