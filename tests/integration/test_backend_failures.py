"""Backends that are down, unreachable, in standby or offline."""

from __future__ import annotations

import socket
import subprocess
import time

from mchelpers import backend_of, login_lands_on, wait_for

UNAVAILABLE = b"NO [UNAVAILABLE]"


def _raw_login(d, user, tag=b"a", timeout=30):
    r = d.raw(timeout=timeout)
    try:
        r.send(tag + b" LOGIN " + user.encode() + b" password\r\n")
        reply = r.read_until_tagged(tag)[-1]
        # After an unavailable login the connection is back in pre-login and usable.
        if UNAVAILABLE in reply:
            r.send(b"n NOOP\r\n")
            assert r.read_until_tagged(b"n")[-1].startswith(b"n OK")
        return reply
    finally:
        r.close()


def _group_of(d, user):
    return d.cli_json("user", "status", user)[0]["group"]


def test_unreachable_backend_gives_unavailable_after_retrying(cluster):
    d = cluster(proxy_timeout="2s", proxy_connect_retry="500ms")
    # A backend whose address has nothing listening on the IMAP port.
    assert d.cli("backend", "add", "--site", "dc1", "ghost", "127.0.3.9").returncode == 0
    assert d.cli("backend", "update", "--status", "online", "ghost").returncode == 0
    user = "user31"
    group = _group_of(d, user)
    assert d.cli("group", "move", "--direct", group, "ghost").returncode == 0

    reply = _raw_login(d, user)
    assert reply.startswith(b"a " + UNAVAILABLE), reply
    m = d.metrics()
    assert m['mailcluster_logins_total{result="unavailable"}'] == 1, m
    assert m["mailcluster_backend_connect_failures_total"] >= 2, m  # it retried


def test_backend_that_accepts_but_never_greets_gives_unavailable(cluster, fleet):
    """A backend address where TCP connections are accepted (kernel backlog) but no IMAP
    greeting ever comes: the login must give up after proxy_timeout, not hang."""
    d = cluster(proxy_timeout="2s")
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        silent.bind(("127.0.3.10", fleet.ports["imap"]))
        silent.listen(16)  # never accept()ed: handshakes complete, nothing is ever sent
        assert d.cli("backend", "add", "--site", "dc1", "silent", "127.0.3.10").returncode == 0
        assert d.cli("backend", "update", "--status", "online", "silent").returncode == 0
        user = "user39"
        assert d.cli("group", "move", "--direct", _group_of(d, user), "silent").returncode == 0
        reply = _raw_login(d, user, timeout=20)
        assert reply.startswith(b"a " + UNAVAILABLE), reply
    finally:
        silent.close()


def test_stopped_backend_gives_unavailable_and_recovers_after_restart(cluster, fleet):
    d = cluster(proxy_timeout="2s")
    victim = fleet.backends[2]
    user = "user32"
    group = _group_of(d, user)
    assert d.cli("group", "move", "--direct", group, victim.name).returncode == 0
    assert login_lands_on(d, user) == victim.name

    victim.stop()
    try:
        reply = _raw_login(d, user)
        assert reply.startswith(b"a " + UNAVAILABLE), reply
        # Users on the other backends are not affected.
        other = fleet.backends[0].name
        other_user = "user33"
        assert d.cli("group", "move", "--direct", _group_of(d, other_user), other).returncode == 0
        assert login_lands_on(d, other_user) == other
    finally:
        victim.start()
    assert login_lands_on(d, user) == victim.name


def test_backend_restarted_while_client_waits_is_used(cluster, fleet):
    """A login that arrives while the backend is down succeeds if it comes back within
    proxy_timeout (the daemon retries every proxy_connect_retry)."""
    d = cluster(proxy_timeout="20s", proxy_connect_retry="200ms")
    victim = fleet.backends[1]
    user = "user34"
    assert d.cli("group", "move", "--direct", _group_of(d, user), victim.name).returncode == 0
    victim.stop()
    r = d.raw(timeout=30)
    try:
        r.send(b"a LOGIN " + user.encode() + b" password\r\n")
        # the daemon is retrying meanwhile
        wait_for(lambda: "event=backend_retry" in d.log_text(), 10,
                 message="the daemon to log a backend_retry")
        victim.start()
        lines = r.read_until_tagged(b"a")
        assert lines[-1].startswith(b"a OK"), lines
        r.send(b"i ID NIL\r\n")
        lines = r.read_until_tagged(b"i")
        assert f'"name" "{victim.name}"'.encode() in b"".join(lines), lines
    finally:
        r.close()
        if not victim.is_running():
            victim.start()


def test_standby_and_offline_backend_unavailable_at_once(cluster, fleet):
    d = cluster(proxy_timeout="10s")
    target = fleet.backends[1].name
    user = "user35"
    assert d.cli("group", "move", "--direct", _group_of(d, user), target).returncode == 0
    assert login_lands_on(d, user) == target

    for status in ("standby", "offline"):
        assert d.cli("backend", "update", "--status", status, target).returncode == 0
        assert d.cli_json("backend", "status", target)[0]["status"] == status
        t0 = time.monotonic()
        reply = _raw_login(d, user)
        elapsed = time.monotonic() - t0
        assert reply.startswith(b"a " + UNAVAILABLE), (status, reply)
        # No connect attempts and no waiting for proxy_timeout (10s).
        assert elapsed < 5, (status, elapsed)

    assert d.cli("backend", "update", "--status", "online", target).returncode == 0
    assert login_lands_on(d, user) == target


def test_new_groups_avoid_standby_backends(cluster, fleet):
    d = cluster()
    standby = fleet.backends[0].name
    assert d.cli("backend", "update", "--status", "standby", standby).returncode == 0
    landed = {login_lands_on(d, f"user{i}") for i in range(61, 91)}
    assert standby not in landed, landed
    assert landed == {b.name for b in fleet.backends[1:]}, landed


def test_no_online_backend_gives_unavailable(cluster, fleet):
    d = cluster()
    for b in fleet.backends:
        assert d.cli("backend", "update", "--status", "offline", b.name).returncode == 0
    reply = _raw_login(d, "user36")
    assert reply.startswith(b"a " + UNAVAILABLE), reply
    assert d.cli("backend", "update", "--status", "online", fleet.backends[0].name).returncode == 0
    assert login_lands_on(d, "user36") == fleet.backends[0].name


def test_client_leaving_during_backend_retries_costs_nothing(cluster):
    d = cluster(proxy_timeout="2s", proxy_connect_retry="300ms")
    assert d.cli("backend", "add", "--site", "dc1", "ghost", "127.0.3.9").returncode == 0
    assert d.cli("backend", "update", "--status", "online", "ghost").returncode == 0
    user = "user37"
    assert d.cli("group", "move", "--direct", _group_of(d, user), "ghost").returncode == 0
    for _ in range(5):
        r = d.raw()
        r.send(b"a LOGIN " + user.encode() + b" password\r\n")
        r.close()  # gone while the daemon is still trying the backend
    # Whether the daemon notices at once or only when it gives up on the backend, the
    # abandoned logins must be released within proxy_timeout (2s) plus a margin.
    wait_for(lambda: d.status()["clients"] == 0, 15, message="client count back to 0")
    assert d.metrics()['mailcluster_logins_total{result="ok"}'] == 0
    assert d.proc.poll() is None, "mailclusterd died"
    assert login_lands_on(d, "user38") in {"backend1", "backend2", "backend3"}


def test_backend_ending_a_session_reaches_the_client(cluster, fleet):
    """The backend closes a proxied session (doveadm kick at the backend): the client gets the
    backend's BYE and EOF through the relay, and the daemon forgets the session."""
    d = cluster()
    user = "user40"
    c = d.login(user)
    try:
        name = backend_of(c)
        b = next(x for x in fleet.backends if x.name == name)
        r = subprocess.run(["doveadm", "-c", b.conf_path, "kick", user], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        c.sock.settimeout(10)
        data = b""
        try:
            while chunk := c.sock.recv(4096):
                data += chunk
        except ConnectionResetError:
            pass
        assert data.startswith(b"* BYE"), data
    finally:
        c.shutdown()  # as any client does on EOF
    wait_for(lambda: d.cli_json("who", user) == [], 10, message="who to drop the session")
    wait_for(lambda: d.status() == {**d.status(), "sessions": 0, "clients": 0}, 10,
             message="sessions and clients back to 0")
