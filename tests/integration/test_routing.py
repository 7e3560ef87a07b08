"""Routing: user -> group -> backend, stickiness under concurrency, shared GeoDB, moves."""

from __future__ import annotations

import collections
import re
import concurrent.futures
import threading
import time

from mchelpers import backend_of, close_quietly, login_lands_on, wait_for

N_USERS = 300
CONNS_PER_USER = 3
POOL = 30
LOAD_DEADLINE = 150  # seconds for the whole load phase


def _user_connection(daemon, user, barrier_login, barrier_hold):
    """One of a user's connections: the user's logins race each other (barrier), and all of
    them are open at the same time when ID is asked."""
    c = None
    try:
        barrier_login.wait()
        c = daemon.login(user)
        name = backend_of(c)
        barrier_hold.wait()
        return name
    except BaseException:
        barrier_login.abort()
        barrier_hold.abort()
        raise
    finally:
        if c is not None:
            close_quietly(c)


def test_hundreds_of_users_concurrent_connections_stick_to_one_backend(cluster, fleet):
    d = cluster()
    users = [f"user{i}" for i in range(1, N_USERS + 1)]
    results = collections.defaultdict(list)
    errors = []
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=POOL) as pool:
        futs = {}
        for u in users:
            b1, b2 = threading.Barrier(CONNS_PER_USER, timeout=60), \
                threading.Barrier(CONNS_PER_USER, timeout=60)
            for _ in range(CONNS_PER_USER):
                futs[pool.submit(_user_connection, d, u, b1, b2)] = u
        done, not_done = concurrent.futures.wait(futs, timeout=LOAD_DEADLINE)
        for f in not_done:
            f.cancel()
        assert not not_done, f"{len(not_done)} connections did not finish in {LOAD_DEADLINE}s"
        for f in done:
            try:
                results[futs[f]].append(f.result())
            except Exception as e:  # collect, report together
                errors.append(f"{futs[f]}: {e!r}")
    elapsed = time.monotonic() - start
    assert not errors, f"{len(errors)} connections failed, e.g. {errors[:5]}"

    split = {u: set(b) for u, b in results.items() if len(set(b)) != 1}
    assert not split, f"users whose connections landed on different backends: {split}"
    assert all(len(results[u]) == CONNS_PER_USER for u in users)

    per_backend = collections.Counter(results[u][0] for u in users)
    names = {b.name for b in fleet.backends}
    assert set(per_backend) == names, per_backend
    for name in names:
        assert per_backend[name] >= 0.15 * N_USERS, \
            f"backend {name} got only {per_backend[name]} of {N_USERS} users: {per_backend}"

    # The GeoDB agrees with where the logins landed.
    groups = d.cli_json("group", "list")
    by_backend = collections.Counter(g["backend"] for g in groups)
    assert set(by_backend) == names, by_backend
    for u in users[:: 15]:
        st = d.cli_json("user", "status", u)[0]
        assert st["backend"] == results[u][0], (u, st, results[u])
    print(f"{N_USERS * CONNS_PER_USER} logins in {elapsed:.1f}s; users per backend {per_backend}")


def _login_on(daemon, user, barrier):
    barrier.wait()
    c = daemon.login(user)
    try:
        return backend_of(c)
    finally:
        close_quietly(c)


def test_two_daemons_sharing_a_geodb_route_users_alike(cluster, fleet):
    a = cluster()
    b = cluster(geodb=a.geodb_path, setup=False)
    assert a.imap_port != b.imap_port
    concurrent_users = [f"user{i}" for i in range(101, 151)]   # first seen on both at once
    sequential_users = [f"user{i}" for i in range(151, 201)]   # first seen on a, then on b

    landed = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        futs = {}
        for u in concurrent_users:
            barrier = threading.Barrier(2, timeout=30)
            futs[pool.submit(_login_on, a, u, barrier)] = (u, "a")
            futs[pool.submit(_login_on, b, u, barrier)] = (u, "b")
        done, not_done = concurrent.futures.wait(futs, timeout=90)
        assert not not_done
        for f in done:
            landed[futs[f]] = f.result()
    for u in sequential_users:
        landed[(u, "a")] = login_lands_on(a, u)
        landed[(u, "b")] = login_lands_on(b, u)

    differ = {u: (landed[(u, "a")], landed[(u, "b")])
              for u in concurrent_users + sequential_users if landed[(u, "a")] != landed[(u, "b")]}
    assert not differ, f"users routed differently by the two daemons: {differ}"
    # ... and to where the shared GeoDB says they live.
    for u in concurrent_users[::5] + sequential_users[::5]:
        assert a.cli_json("user", "status", u)[0]["backend"] == landed[(u, "a")]


def _other_backend(fleet, name):
    return next(b.name for b in fleet.backends if b.name != name)


def test_group_move_direct_changes_next_login(cluster, fleet):
    d = cluster()
    user = "user7"
    first = login_lands_on(d, user)
    group = d.cli_json("user", "status", user)[0]["group"]
    target = _other_backend(fleet, first)

    r = d.cli("group", "move", "--direct", group, target)
    assert r.returncode == 0, r.stderr
    assert d.cli_json("group", "status", group)[0]["backend"] == target
    assert login_lands_on(d, user) == target
    # Moving back works the same way.
    assert d.cli("group", "move", "--direct", group, first).returncode == 0
    assert login_lands_on(d, user) == first


def test_user_move_direct_and_delete(cluster, fleet):
    d = cluster()
    user = "user8"
    home = login_lands_on(d, user)
    st = d.cli_json("user", "status", user)[0]
    hash_group = st["group"]
    assert st["override"] == "no"

    # A target group placed on another backend.
    target_group = str((int(hash_group) + 1) % 256)
    target_backend = _other_backend(fleet, home)
    assert d.cli("group", "move", "--direct", target_group, target_backend).returncode == 0

    r = d.cli("user", "move", "--direct", user, target_group)
    assert r.returncode == 0, r.stderr
    st = d.cli_json("user", "status", user)[0]
    assert st["group"] == target_group and st["override"] == "yes", st
    assert st["backend"] == target_backend
    assert login_lands_on(d, user) == target_backend

    r = d.cli("user", "delete", user)
    assert r.returncode == 0, r.stderr
    st = d.cli_json("user", "status", user)[0]
    assert st["group"] == hash_group and st["override"] == "no", st
    assert login_lands_on(d, user) == home


def test_user_access_agrees_with_real_login(cluster, fleet):
    d = cluster()
    ips = {b.name: b.ip for b in fleet.backends}
    # access first (assigns the group), then log in
    for i in range(21, 41):
        u = f"user{i}"
        acc = d.cli_json("user", "access", u)[0]
        assert acc["user"] == u and acc["status"] == "ok", acc
        assert acc["address"] == ips[acc["backend"]], acc
        assert login_lands_on(d, u) == acc["backend"], u
    # log in first (the daemon assigns), then access
    for i in range(41, 61):
        u = f"user{i}"
        landed = login_lands_on(d, u)
        acc = d.cli_json("user", "access", u)[0]
        assert acc["backend"] == landed and acc["address"] == ips[landed], (u, acc)


def test_usernames_are_case_insensitive_for_routing(cluster):
    d = cluster()
    lower = login_lands_on(d, "user9")
    # Dovecot lowercases (auth_username_format = %Lu), so USER9 is the same mailbox.
    assert login_lands_on(d, "USER9") == lower
    assert d.cli_json("user", "status", "USER9")[0]["group"] == \
        d.cli_json("user", "status", "user9")[0]["group"]


def _fnv1a64(data: bytes) -> int:
    h = 0xcbf29ce484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def test_hash_group_is_fnv1a64_of_lowercased_user(cluster):
    d = cluster(start=False)
    for u in ["user1", "user77", "User150", "USER299", "someone@example.com", "x"]:
        st = d.cli_json("user", "status", u)[0]
        assert st["user"] == u.lower(), st
        assert int(st["group"]) == _fnv1a64(u.lower().encode()) % 256, (u, st)
        assert st["override"] == "no"


def test_the_daemon_logs_the_hash_group(cluster):
    d = cluster()
    for u in ("user111", "user112"):
        login_lands_on(d, u)
        group = _fnv1a64(u.encode()) % 256
        assert f"event=login result=ok protocol=imap user={u} group={group} " in d.log_text()


def test_direct_group_move_ends_open_sessions_on_the_old_backend(cluster, fleet):
    """--direct switches at once (no hold, no acknowledgement), but a session left on the
    old backend would leave the user on two backends: the daemon ends it as soon as it sees
    the change, and the reconnect lands on the new backend."""
    d = cluster()
    user = "user113"
    c = d.login(user)
    try:
        first = backend_of(c)
        group = d.cli_json("user", "status", user)[0]["group"]
        target = _other_backend(fleet, first)
        assert d.cli("group", "move", "--direct", group, target).returncode == 0
        assert login_lands_on(d, user) == target
        c.sock.settimeout(10)
        line = c.readline()
        assert line.startswith(b"* BYE [UNAVAILABLE]") and b"moving" in line, line
        assert wait_for(lambda: [r["backend"] for r in d.cli_json("who", user)] == [], 10)
        assert re.search(rf"event=session_moved user={user} group={group} backend={first} "
                         rf'.*reason="group {group} moved from {first} to {target}"',
                         d.log_text())
    finally:
        close_quietly(c)


def test_load_factor_zero_backend_gets_no_new_groups(cluster, fleet):
    d = cluster()
    excluded = fleet.backends[2].name
    assert d.cli("backend", "update", "--load-factor", "0", excluded).returncode == 0
    landed = collections.Counter(login_lands_on(d, f"user{i}") for i in range(120, 160))
    assert excluded not in landed, landed
    assert set(landed) == {b.name for b in fleet.backends[:2]}, landed
    groups = {g["backend"] for g in d.cli_json("group", "list")}
    assert excluded not in groups


def test_routes_survive_a_daemon_restart(cluster):
    d = cluster()
    users = [f"user{i}" for i in range(161, 181)]
    before = {u: login_lands_on(d, u) for u in users}
    c = d.login(users[0])
    try:
        rc = d.stop()
        assert rc == 0, f"mailclusterd exited with {rc} on SIGTERM"
        # the open session was closed with the daemon
        c.sock.settimeout(10)
        try:
            assert c.sock.recv(4096) == b""
        except ConnectionResetError:
            pass
    finally:
        c.shutdown()
    d2 = cluster(geodb=d.geodb_path, setup=False)
    after = {u: login_lands_on(d2, u) for u in users}
    assert after == before
