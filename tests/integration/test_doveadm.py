"""The doveadm HTTP API client (src/net/doveadm.c) against the fleet's real Dovecot backends,
through build/doveadm_tool (tests/tools/doveadm_tool.c):

* ``who`` lists the users logged in directly on a backend (IMAP and POP3, one entry per user);
* ``kick`` closes a user's connections - an IDLE one gets ``* BYE`` and EOF - and leaves the
  other users alone; a user without connections is not an error;
* ``kick-group`` kicks exactly the users whose hash group (FNV-1a 64 of the lower-cased name,
  as brain/user.h) is the given one;
* a wrong key, a closed port and a silent server give the clear errors, within the timeout.

Users user281..user299 are this module's: no other test logs them in.
"""

from __future__ import annotations

import json
import os
import poplib
import socket
import subprocess
import time

import pytest

import mchelpers
from mchelpers import PASSWORD, RawIMAP, wait_for

TOOL = os.path.join(mchelpers.REPO, "build", "doveadm_tool")


@pytest.fixture(scope="module", autouse=True)
def _tool_built():
    if not os.access(TOOL, os.X_OK):
        pytest.fail(f"{TOOL} is missing: run 'make -C {mchelpers.REPO} all' first",
                    pytrace=False)


def tool(*args: str, timeout_ms: int = 5000) -> subprocess.CompletedProcess:
    return mchelpers.spawn_retrying(subprocess.run, [TOOL, "-t", str(timeout_ms), *args],
                                    capture_output=True, text=True, timeout=60,
                                    stdin=subprocess.DEVNULL)


def who(backend) -> list[str]:
    r = tool("who", backend.doveadm_url, backend.doveadm_api_key)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def kicked_count(r: subprocess.CompletedProcess) -> int:
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("kicked="), r.stdout
    return int(r.stdout.strip().split("=", 1)[1])


def fnv1a64(data: bytes) -> int:
    h = 0xcbf29ce484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def group_of(user: str, group_count: int) -> int:
    normalized = "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in user)
    return fnv1a64(normalized.encode()) % group_count


class IdleClient:
    """A user logged in straight to the backend, idling (RawIMAP: we want to see the BYE)."""

    def __init__(self, backend, user: str):
        self.user = user
        self.raw = RawIMAP(backend.ports["imap"], host=backend.ip, timeout=15)
        assert self.raw.greeting.startswith(b"* OK"), self.raw.greeting
        self.raw.send(f"a LOGIN {user} {PASSWORD}\r\n".encode())
        assert self.raw.read_until_tagged(b"a")[-1].startswith(b"a OK")
        self.raw.send(b"b IDLE\r\n")
        assert self.raw.readline().startswith(b"+ ")

    def still_served(self) -> bool:
        """End the IDLE and run a NOOP: True if the backend still serves this connection."""
        try:
            self.raw.send(b"DONE\r\n")
            assert self.raw.read_until_tagged(b"b")[-1].startswith(b"b OK")
            self.raw.send(b"c NOOP\r\n")
            ok = self.raw.read_until_tagged(b"c")[-1].startswith(b"c OK")
            self.raw.send(b"b IDLE\r\n")
            return ok and self.raw.readline().startswith(b"+ ")
        except (EOFError, OSError):
            return False

    def kicked(self, timeout: float = 10) -> bytes:
        """Everything until the backend closes the connection (fails if it does not)."""
        return self.raw.read_to_eof(timeout)

    def close(self) -> None:
        self.raw.close()


@pytest.fixture
def backend(fleet):
    return fleet.backends[0]


@pytest.fixture
def clients():
    opened: list[IdleClient] = []
    yield opened
    for c in opened:
        c.close()


def login_all(backend, users, clients) -> dict[str, IdleClient]:
    by_user = {}
    for u in users:
        c = IdleClient(backend, u)
        clients.append(c)
        by_user[u] = c
    return by_user


def test_state_exposes_the_api(fleet):
    with open(os.path.join(fleet.root_dir, "backends.json")) as f:
        state = json.load(f)
    for entry, b in zip(state, fleet.backends):
        assert entry["doveadm_url"] == f"http://{b.ip}:{mchelpers.FLEET_DOVEADM_PORT}/doveadm/v1"
        assert entry["doveadm_api_key"] == b.doveadm_api_key
        assert "doveadm" not in entry["ports"]  # ports stay the proxied mail protocols
        assert mchelpers.port_accepts(b.ip, mchelpers.FLEET_DOVEADM_PORT)


def test_who_lists_connected_users(fleet, backend, clients):
    users = ["user281", "user282", "user283"]
    login_all(backend, users, clients)
    # the same user on POP3 too: still one entry
    pop = poplib.POP3(backend.ip, backend.ports["pop3"], timeout=15)
    try:
        pop.user("user283")
        pop.pass_(PASSWORD)
        listed = who(backend)
        assert set(users) <= set(listed), listed
        assert listed.count("user283") == 1
        assert listed == sorted(set(listed))
    finally:
        pop.quit()
    # the other backends do not see them
    for other in fleet.backends:
        if other is not backend:
            assert not set(users) & set(who(other)), other.name


def test_kick_closes_the_idle_connection(backend, clients):
    by_user = login_all(backend, ["user284", "user285"], clients)
    r = tool("kick", backend.doveadm_url, backend.doveadm_api_key, "user284")
    assert kicked_count(r) == 1
    tail = by_user["user284"].kicked()
    assert b"* BYE" in tail, tail
    assert by_user["user285"].still_served()
    wait_for(lambda: "user284" not in who(backend), 5, message="user284 to leave who")
    assert "user285" in who(backend)
    # nobody to kick is no error; several users at once, one of them absent
    r = tool("kick", backend.doveadm_url, backend.doveadm_api_key, "user284", "user285", "user299")
    assert kicked_count(r) == 1
    assert b"* BYE" in by_user["user285"].kicked()


def test_kick_group_kicks_exactly_that_group(backend, clients):
    group_count = 8
    users = [f"user{i}" for i in range(286, 299)]
    groups = {u: group_of(u, group_count) for u in users}
    # the group holding most of our users, so that both sides are non-empty
    target = max(range(group_count), key=lambda g: list(groups.values()).count(g))
    members = {u for u in users if groups[u] == target}
    assert members and members != set(users)
    by_user = login_all(backend, users, clients)

    listed = who(backend)
    assert set(users) <= set(listed)
    # anyone else connected right now (another test's leftovers) counts as well
    expected = {u for u in listed if group_of(u, group_count) == target}
    r = tool("kick-group", backend.doveadm_url, backend.doveadm_api_key, str(group_count),
             str(target))
    assert kicked_count(r) == len(expected)
    for u in sorted(members):
        assert b"* BYE" in by_user[u].kicked(), u
    for u in sorted(set(users) - members):
        assert by_user[u].still_served(), u
    after = set(who(backend))
    assert not after & expected, after & expected
    assert set(users) - members <= after


def test_wrong_key_is_a_clear_401(backend):
    start = time.monotonic()
    r = tool("who", backend.doveadm_url, "not-the-key")
    assert r.returncode == 1
    assert r.stderr.strip() == (f"doveadm on {backend.doveadm_url}: HTTP 401 "
                                "(wrong backend_doveadm_api_key?)")
    r = tool("kick-group", backend.doveadm_url, "not-the-key", "8", "0")
    assert r.returncode == 1 and "HTTP 401" in r.stderr
    # Dovecot 2.3.19 never answers a POST with a wrong key: the client must not have sent one
    assert time.monotonic() - start < 5


def test_unreachable_and_silent_servers(backend):
    closed_port = mchelpers.free_port(backend.ip)
    url = f"http://{backend.ip}:{closed_port}/doveadm/v1"
    r = tool("who", url, backend.doveadm_api_key)
    assert r.returncode == 1
    assert r.stderr.startswith(f"doveadm on {url}: connection refused by {backend.ip}:"), r.stderr

    # accepts (the kernel does), never answers
    with socket.socket() as silent:
        silent.bind((backend.ip, 0))
        silent.listen(4)
        url = f"http://{backend.ip}:{silent.getsockname()[1]}/doveadm/v1"
        start = time.monotonic()
        r = tool("kick", url, backend.doveadm_api_key, "user1", timeout_ms=700)
        took = time.monotonic() - start
    assert r.returncode == 1
    assert r.stderr.strip() == f"doveadm on {url}: timed out after 700 ms while waiting for the answer"
    assert 0.6 < took < 3, took
