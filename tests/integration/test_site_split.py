"""Two sites on two Cassandra data centres, and a real cut of the link between them.

The set-up is splitsites.py's (fixtures split_world and split_sites in conftest.py): Cassandra
dc1 (127.0.5.11) and dc2 (127.0.5.12), a mailclusterd per site whose GeoDB is its own data
centre only (local_quorum / local_serial), two Dovecot backends per site, each site's load
balancer the other site's daemon.  The cut drops Cassandra's internode traffic (storage port
7000 of both nodes, both directions) with an nft table of this process (netcut.py); the
daemons, the CLI and the clients still reach their own node and each other.

* link up: users whose groups were placed in dc1 or dc2 log in (imaplib, LOGIN) through
  either daemon and reach their home site's backend, directly or through the other site's
  daemon;
* the cut is real at the GeoDB level: a write through one side is not visible through the
  other during the cut, both sides go on serving their own users (and placing new ones),
  and after the heal both converge;
* each site's controller records the other as unreachable during a cut longer than
  site_reachability_timeout, and as reachable again after the heal.

Site failover across a cut (failover cells) comes in a follow-up test on the same fixtures.
Every wait is bounded; the daemons, backends and nodes are stopped by PID; the nft table is
removed on heal, at teardown and at exit.
"""

from __future__ import annotations

import re
import socket
import time

from mchelpers import wait_for
from netcut import NetCut, nft_available
from splitsites import SITE_BACKENDS, SITE_SETTINGS, SITES

OTHER = {"dc1": "dc2", "dc2": "dc1"}
REACHABILITY_TIMEOUT_S = 5  # SITE_SETTINGS["site_reachability_timeout"]
assert SITE_SETTINGS["site_reachability_timeout"] == f"{REACHABILITY_TIMEOUT_S}s"


def _place_home(s, users_by_site: dict) -> dict:
    """First login of each user through its intended home site (new groups are placed in
    the daemon's own site); then wait until the other data centre has the assignment too.
    Returns user -> backend."""
    home = {}
    for site, users in users_by_site.items():
        for u in users:
            b = s.login_backend(site, u)
            assert s.site_of(b) == site, f"{u}, first met through {site}, landed on {b}"
            home[u] = b
    for u, b in home.items():
        for site in SITES:
            wait_for(lambda: s.user_group(site, u)[1] == b, 20, interval=0.3,
                     message=f"{site}'s data centre to have {u} on {b}")
    return home


def _lands(s, site: str, user: str, timeout: float = 20) -> str:
    """The backend a login through site lands on; retried (bounded) while refused."""
    def attempt():
        try:
            return s.login_backend(site, user)
        except Exception:  # noqa: BLE001 - refused or reset: try again until the bound
            return None
    return wait_for(attempt, timeout, interval=0.5, message=f"{user} to log in through {site}")


# --------------------------------------------------------------------------- 0. the cut itself


def _connects(src: str | None, dst: tuple, timeout: float = 1.0) -> bool:
    c = socket.socket()
    c.settimeout(timeout)
    try:
        if src:
            c.bind((src, 0))
        c.connect(dst)
        return True
    except OSError:
        return False
    finally:
        c.close()


def test_netcut_drops_loopback_traffic_on_the_output_hook_and_heals():
    """Loopback packets pass the output hook: a connection between the two sides times out
    while cut (drop) and works again at once after the heal; the table is ours alone and
    gone after close().  With sources="pair" a client that does not bind its source
    (127.0.0.1 on loopback) is not cut; sources="any" cuts it too."""
    assert nft_available() is None, nft_available()
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.5.31", 0))
    srv.listen(16)
    dst = srv.getsockname()
    try:
        assert _connects("127.0.5.32", dst)
        pair = NetCut(["127.0.5.31"], ["127.0.5.32"], ports=[dst[1]])
        try:
            pair.cut()
            t0 = time.monotonic()
            assert not _connects("127.0.5.32", dst, timeout=1.0)
            assert time.monotonic() - t0 >= 0.9, "refused, not dropped"
            assert _connects(None, dst), "an unbound client (source 127.0.0.1) was cut"
            assert _connects("127.0.5.33", dst), "a third address was cut"
            assert pair.dropped() >= 1
            pair.heal()
            assert not pair.table_exists()
            assert _connects("127.0.5.32", dst)
        finally:
            pair.close()
        anyone = NetCut(["127.0.5.31"], ["127.0.5.32"], ports=[dst[1]], sources="any")
        try:
            with anyone:
                assert not _connects(None, dst)
                assert not _connects("127.0.5.32", dst)
            assert _connects(None, dst)
        finally:
            anyone.close()
        assert not anyone.table_exists() and not pair.table_exists()
    finally:
        srv.close()


# --------------------------------------------------------------------------- a. link up


def test_link_up_users_reach_their_home_site_through_either_daemon(split_sites):
    s = split_sites()
    users = s.new_users(8)
    by_site = {"dc1": users[:4], "dc2": users[4:]}
    marks = {b.name: len(b.log_text()) for bs in s.backends.values() for b in bs}
    home = _place_home(s, by_site)

    for u in users:
        home_site = s.site_of(home[u])
        for site in SITES:
            assert s.login_backend(site, u) == home[u], (u, site)
            m = s.login_line(site, u)
            assert m.group(1) == home[u], (site, m.group(0))
            if site == home_site:  # straight to the backend
                backend_ip = s.world.fleet.backend(home[u]).ip
                assert m.group(3) is None and m.group(2).startswith(backend_ip + ":"), \
                    m.group(0)
            else:  # through the home site's daemon (its load balancer)
                lb = f"127.0.0.1:{s.daemons[home_site].ports['imap']}"
                assert m.group(3) == home_site and m.group(2) == lb, m.group(0)
        # the home backend's Dovecot logged the logins; the other site's backends never saw
        # the user
        b = s.world.fleet.backend(home[u])
        wait_for(lambda: len(re.findall(rf"imap-login: .*Login: user=<{u}>",
                                        b.log_text()[marks[b.name]:])) >= 3, 10,
                 message=f"{home[u]} to log {u}'s three logins")
        for name in SITE_BACKENDS[OTHER[home_site]]:
            other = s.world.fleet.backend(name)
            assert f"user=<{u}>" not in other.log_text()[marks[name]:], (u, name)
    for site in SITES:
        st = s.daemons[site].status()["sites"]
        assert st["forwards"] == 4 and st["forwarded_in"] == 4, (site, st)
        assert st["loops_refused"] == 0, (site, st)


# --------------------------------------------------------------------------- b. the cut


def test_cut_keeps_each_sides_writes_apart_until_the_heal(split_sites):
    s = split_sites()
    known = s.new_users(4)
    home = _place_home(s, {"dc1": known[:2], "dc2": known[2:]})
    taken = {s.user_group("dc1", u)[0] for u in known}
    fresh = s.new_users(4, start=100, avoid_groups=frozenset(taken))
    fresh_by_site = {"dc1": fresh[:2], "dc2": fresh[2:]}
    before = {site: s.backend_rows(site) for site in SITES}
    for site in SITES:
        assert before[site]["backend1"]["load_factor"] == "100", before[site]
        assert before[site]["backend3"]["load_factor"] == "100", before[site]

    marks = s.world.log_marks()
    t_cut = time.monotonic()
    s.cut()
    fresh_home = {}
    try:
        # one write through each side
        s.cli_ok("dc1", "backend", "update", "--load-factor", "37", "backend1")
        s.cli_ok("dc2", "backend", "update", "--load-factor", "41", "backend3")
        # new users met on each side: their groups are placed in that side's site
        for site, users in fresh_by_site.items():
            for u in users:
                b = s.login_backend(site, u)
                assert s.site_of(b) == site, (u, site, b)
                fresh_home[u] = b
        # For 20 s (past the moment Cassandra's gossip convicts the other node): neither
        # side sees the other's writes, and both serve their own users.
        rounds, down_s = 0, None
        while time.monotonic() - t_cut < 20 or rounds < 2:
            rows = {site: s.backend_rows(site) for site in SITES}
            assert rows["dc1"]["backend1"]["load_factor"] == "37", rows["dc1"]["backend1"]
            assert rows["dc2"]["backend1"]["load_factor"] == "100", rows["dc2"]["backend1"]
            assert rows["dc2"]["backend3"]["load_factor"] == "41", rows["dc2"]["backend3"]
            assert rows["dc1"]["backend3"]["load_factor"] == "100", rows["dc1"]["backend3"]
            for site, users in fresh_by_site.items():
                for u in users:
                    assert s.user_group(site, u)[1] == fresh_home[u], (site, u)
                    assert s.user_group(OTHER[site], u)[1] == "-", \
                        f"{u}, placed in {site} during the cut, is visible in {OTHER[site]}"
            for u in known + fresh:
                site = s.site_of((home | fresh_home)[u])
                assert s.login_backend(site, u) == (home | fresh_home)[u], (u, site, rounds)
            rounds += 1
            if down_s is None and all(s.world.sees(n, False, marks) for n in (1, 2)):
                down_s = time.monotonic() - t_cut
        if down_s is None:
            s.wait_cassandra_sees(up=False, since=marks, timeout=60)
            down_s = time.monotonic() - t_cut
        dropped = s.world.netcut.dropped()
        assert dropped > 0, "the cut dropped no packet"
        for site in SITES:
            assert s.daemons[site].proc.poll() is None, f"{site}'s daemon died"
    finally:
        marks = s.world.log_marks()
        t_heal = time.monotonic()
        s.heal()
    up_s = s.wait_cassandra_sees(up=True, since=marks, timeout=60)

    def converged():
        rows = {site: s.backend_rows(site) for site in SITES}
        if any(rows[site]["backend1"]["load_factor"] != "37" or
               rows[site]["backend3"]["load_factor"] != "41" for site in SITES):
            return False
        return all(s.user_group(site, u)[1] == fresh_home[u] for site in SITES for u in fresh)
    wait_for(converged, 120, interval=0.5, message="both data centres to have both sides' writes")
    converge_s = time.monotonic() - t_heal
    print(f"\ncut: both nodes saw the other DOWN {down_s:.1f} s after the cut "
          f"({dropped} packets dropped); UP {up_s:.1f} s after the heal; both sides' writes "
          f"on both sides {converge_s:.1f} s after the heal")

    # every user, through both daemons, on one and the same backend
    for u in known + fresh:
        want = (home | fresh_home)[u]
        for site in SITES:
            assert _lands(s, site, u) == want, (u, site)


# --------------------------------------------------------------------------- c. reachability


def _reachable(s, through: str, observer: str) -> str | None:
    """observer's record of the other site, as through's data centre has it: yes/no/None."""
    row = s.reachability(through).get((observer, OTHER[observer]))
    return row["reachable"] if row else None


def test_cut_each_controller_records_the_other_site_unreachable_then_reachable(split_sites):
    s = split_sites()
    for site in SITES:  # link up: each records the other reachable, seen from both sides
        for through in SITES:
            wait_for(lambda: _reachable(s, through, site) == "yes", 30, interval=0.5,
                     message=f"{site}'s record of {OTHER[site]} (through {through}) to be yes")
    users = s.new_users(2)
    home = _place_home(s, {"dc1": users[:1], "dc2": users[1:]})
    logs = {site: len(s.daemons[site].log_text()) for site in SITES}
    beats = {site: s.daemons[site].status()["controller"]["site_heartbeats"] for site in SITES}

    t_cut = time.monotonic()
    s.cut()
    try:
        seen = {}
        # each side: no heartbeat of the other for site_reachability_timeout -> unreachable
        # (a controller pass every probe_interval, 1 s)
        while len(seen) < 2:
            for site in SITES:
                if site not in seen and _reachable(s, site, site) == "no":
                    seen[site] = time.monotonic() - t_cut
            assert time.monotonic() - t_cut < REACHABILITY_TIMEOUT_S + 30, \
                f"not every side recorded the other unreachable: {seen}"
            time.sleep(0.3)
        for site in SITES:
            assert seen[site] >= REACHABILITY_TIMEOUT_S - 1, \
                f"{site} recorded the other unreachable after {seen[site]:.1f} s only"
            assert re.search(rf"event=site_reachability observer={site} target={OTHER[site]} "
                             rf"reachable=no ", s.daemons[site].log_text()[logs[site]:]), site
        # the cut is also between the records: each side still has the other's last
        # "reachable" record from before the cut
        for site in SITES:
            assert _reachable(s, site, OTHER[site]) == "yes", site
        # a cut longer than the timeout: both keep serving their own users meanwhile
        while time.monotonic() - t_cut < 2 * REACHABILITY_TIMEOUT_S + 5:
            for u in users:
                site = s.site_of(home[u])
                assert s.login_backend(site, u) == home[u], (u, site)
            time.sleep(0.5)
        for site in SITES:
            assert _reachable(s, site, site) == "no", site
            # its controller kept its passes and heartbeats going, into its own data centre
            c = s.daemons[site].status()["controller"]
            assert c["me"] and c["site_heartbeats"] >= beats[site] + 5, (site, beats, c)
    finally:
        t_heal = time.monotonic()
        s.heal()

    # Each observer records the other reachable again (its own data centre first), and the
    # other side gets that new record (the same reachable and since): the views converge.
    back = {}
    while len(back) < 4:
        for site in SITES:
            own = s.reachability(site).get((site, OTHER[site]))
            if own is None or own["reachable"] != "yes":
                continue
            back.setdefault((site, site), time.monotonic() - t_heal)
            far = s.reachability(OTHER[site]).get((site, OTHER[site]))
            if far and (far["reachable"], far["since"]) == (own["reachable"], own["since"]):
                back.setdefault((site, OTHER[site]), time.monotonic() - t_heal)
        assert time.monotonic() - t_heal < 120, \
            f"not every record says reachable again on both sides after the heal: {back}"
        time.sleep(0.3)
    for site in SITES:
        assert re.search(rf"event=site_reachability observer={site} target={OTHER[site]} "
                         rf"reachable=yes ", s.daemons[site].log_text()[logs[site]:]), site
    print(f"\nreachability: recorded unreachable {seen['dc1']:.1f} s (dc1) and "
          f"{seen['dc2']:.1f} s (dc2) after the cut; reachable again, (observer, seen "
          f"through) -> s after the heal: "
          + ", ".join(f"{k}: {v:.1f}" for k, v in sorted(back.items())))


# --------------------------------------------------------------------------- 4. split brain


def _failover_cells(s, site: str) -> list[dict]:
    """`site failover list` as site's data centre has it (every cell, with its verdict)."""
    return s.cli_json(site, "site", "failover", "list")


def _events(s, site: str, event: str, since: int = 0) -> list[str]:
    """site's daemon's `event=EVENT ` lines after offset since of its log."""
    return re.findall(rf"^.* event={event} .*$", s.daemons[site].log_text()[since:], re.M)


def test_split_brain_both_sides_fail_over_and_the_heal_moves_each_group_home_once(split_sites):
    """Both sides act during a cut longer than site_failover_delay: each fails the other
    site's groups over and serves their users on its own backends.  After the heal Cassandra
    brings each side the other's heartbeats of the cut, so every cell written during it is
    void (written while its home site was alive): every group ends on its home backend,
    through both sites, each moved home exactly once, nothing moved again afterwards."""
    from splitsites import SITE_FAILOVER_SETTINGS
    s = split_sites(**SITE_FAILOVER_SETTINGS)
    users = s.new_users(8)
    by_site = {"dc1": users[:4], "dc2": users[4:]}
    home = _place_home(s, by_site)
    group = {u: s.user_group("dc1", u)[0] for u in users}
    home_site = {u: s.site_of(b) for u, b in home.items()}
    # every group has its failover site (the other site), seen in both data centres
    for site in SITES:
        wait_for(lambda: all(
            r["failover_site"] == OTHER[home_site[u]]
            for u in users
            for r in s.cli_json(site, "group", "status", str(group[u]))), 30, interval=0.5,
            message=f"the failover sites of the test's groups in {site}'s data centre")

    # every group of the other site is failed over, the test's and any other
    expected = {site: {g for g, b in s.assignments(site).items() if s.site_of(b) == OTHER[site]}
                for site in SITES}
    marks = {site: len(s.daemons[site].log_text()) for site in SITES}
    s.cut()
    # both sides act: each writes cells for the other site's groups...
    for site in SITES:
        other_groups = {group[u] for u in by_site[OTHER[site]]}
        wait_for(lambda: other_groups <= {int(c["group"]) for c in _failover_cells(s, site)
                                          if c["writer"] == site and c["verdict"] == "failover"},
                 60, interval=0.5, message=f"{site} to fail {OTHER[site]}'s groups over")
    # ...and serves those users on its own backends (once its daemon has held each cell for
    # site_reachability_timeout), while their home site keeps serving them at home
    during = {}
    for site in SITES:
        for u in by_site[OTHER[site]]:
            during[(site, u)] = wait_for(
                lambda: (lambda b: b if b and s.site_of(b) == site else None)(_lands(s, site, u)),
                30, interval=0.5, message=f"{u} to be served in {site} during the cut")
        for u in by_site[site]:
            assert _lands(s, site, u) == home[u], (site, u)
    written = {site: _events(s, site, "site_failover", marks[site]) for site in SITES}
    for site in SITES:
        groups = [int(re.search(r" group=(\d+) ", line).group(1)) for line in written[site]]
        assert sorted(groups) == sorted(expected[site]), (site, written[site])
    assert s.is_cut

    heal_marks = {site: len(s.daemons[site].log_text()) for site in SITES}
    s.heal()
    # every cell ends void in both data centres, and each side deletes its own
    for site in SITES:
        wait_for(lambda: not _failover_cells(s, site), 90, interval=1,
                 message=f"no failover cell left in {site}'s data centre")
    voided = {site: _events(s, site, "site_cell_void", heal_marks[site]) for site in SITES}
    for site in SITES:
        assert len(voided[site]) == len(expected[site]), voided[site]
        assert all("void_alive" in line or "void_epoch" in line for line in voided[site]), \
            voided[site]
        assert _events(s, site, "site_failback", heal_marks[site]) == []
        assert _events(s, site, "site_failover", heal_marks[site]) == []

    # the end state: every user on its home backend through both sites; the users served on
    # the wrong side during the cut moved home once (4 groups per side)
    moved = 0
    for site in SITES:
        for u in users:
            b = wait_for(lambda: (lambda x: x if x == home[u] else None)(_lands(s, site, u)),
                         30, interval=0.5, message=f"{u} home ({home[u]}) through {site}")
            if (site, u) in during and during[(site, u)] != b:
                moved += 1
    assert moved == 8, moved
    # and nothing moves again: a second round a few seconds later lands the same
    time.sleep(3)
    for site in SITES:
        for u in users:
            assert _lands(s, site, u) == home[u], (site, u)
    for site in SITES:
        assert _events(s, site, "site_failover", heal_marks[site]) == []
        st = s.daemons[site].status()["controller"]["site_failover"]
        n = len(expected[site])
        assert st["cells_held"] == 0 and st["cells_written"] == n and st["cells_cleaned"] == n, st
