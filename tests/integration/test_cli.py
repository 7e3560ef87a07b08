"""The mailcluster CLI: refusals name the object, exit codes 0/1/2, output formats."""

from __future__ import annotations

import json


def _refused(r, *words):
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    for w in words:
        assert w in r.stderr, (w, r.stderr)


def test_backend_list_shows_the_fleet_online(cli, fleet):
    rows = json.loads(cli("backend", "list", fmt="json").stdout)
    assert {(r["backend"], r["address"], r["status"], r["site"]) for r in rows} == \
        {(b.name, b.ip, "online", "dc1") for b in fleet.backends}


def test_adding_an_existing_backend_is_refused(cli, fleet):
    b = fleet.backends[0]
    r = cli("backend", "add", "--site", "dc1", b.name, "127.0.3.99")
    _refused(r, b.name)
    # unchanged
    row = json.loads(cli("backend", "status", b.name, fmt="json").stdout)[0]
    assert row["address"] == b.ip and row["status"] == "online", row


def test_adding_a_backend_to_a_missing_site_is_refused(cli):
    _refused(cli("backend", "add", "--site", "nosuchsite", "newbackend", "127.0.3.50"),
             "nosuchsite")


def test_adding_a_backend_with_a_bad_address_is_refused(cli):
    _refused(cli("backend", "add", "--site", "dc1", "newbackend", "not-an-ip"), "not-an-ip")


def test_updating_a_missing_backend_is_refused(cli):
    _refused(cli("backend", "update", "--status", "online", "nosuchbackend"), "nosuchbackend")
    _refused(cli("backend", "status", "nosuchbackend"), "nosuchbackend")


def test_invalid_status_value_is_refused(cli, fleet):
    name = fleet.backends[1].name
    _refused(cli("backend", "update", "--status", "sleepy", name), "sleepy")
    row = json.loads(cli("backend", "status", name, fmt="json").stdout)[0]
    assert row["status"] == "online", row


def test_load_factor_range(cli, fleet):
    name = fleet.backends[2].name
    _refused(cli("backend", "update", "--load-factor", "101", name), name, "101")
    _refused(cli("backend", "update", "--load-factor", "-1", name), name)
    row = json.loads(cli("backend", "status", name, fmt="json").stdout)[0]
    assert row["load_factor"] == "100", row
    for lf in ("0", "100", "37"):
        r = cli("backend", "update", "--load-factor", lf, name)
        assert r.returncode == 0, r.stderr
        assert json.loads(cli("backend", "status", name, fmt="json").stdout)[0]["load_factor"] == lf


def test_adding_an_existing_site_is_refused(cli):
    _refused(cli("site", "add", "dc1"), "dc1")


def test_group_and_user_argument_errors(cli, fleet):
    _refused(cli("group", "move", "--direct", "256", fleet.backends[0].name), "256")
    _refused(cli("group", "move", "--direct", "5", "nosuchbackend"), "nosuchbackend")
    _refused(cli("group", "status", "banana"), "banana")
    _refused(cli("user", "move", "--direct", "user1", "9999"), "9999")
    _refused(cli("user", "delete", "user1"), "user1")   # no override stored
    _refused(cli("user", "access", "bad user"), "bad user")
    _refused(cli("user", "status", ""))


def test_usage_errors_exit_2(cli):
    for args in (("frobnicate",), ("backend",), ("backend", "add", "x"),
                 ("backend", "update", "--bogus", "1", "backend1"), ("group", "move")):
        r = cli(*args)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert "usage" in r.stderr, (args, r.stderr)


def test_output_formats(cli, fleet):
    table = cli("backend", "list")
    tab = cli("backend", "list", fmt="tab")
    flow = cli("backend", "list", fmt="flow")
    assert table.returncode == tab.returncode == flow.returncode == 0
    assert tab.stdout.splitlines()[0].split("\t")[:4] == ["backend", "site", "address", "status"]
    assert len(tab.stdout.splitlines()) == 1 + len(fleet.backends)
    for b in fleet.backends:
        assert b.name in table.stdout
        assert f"backend={b.name} site=dc1 address={b.ip} status=online" in flow.stdout
    r = cli("backend", "list", fmt="yaml")
    assert r.returncode == 2, r.stderr


def test_backend_add_starts_in_standby_and_gets_no_groups(cli):
    r = cli("backend", "add", "--site", "dc1", "spare", "127.0.3.20")
    assert r.returncode == 0, r.stderr
    row = json.loads(cli("backend", "status", "spare", fmt="json").stdout)[0]
    assert row["status"] == "standby" and row["groups"] == "0", row
    for i in range(1, 40):
        acc = json.loads(cli("user", "access", f"user{i}", fmt="json").stdout)[0]
        assert acc["backend"] != "spare", acc


def test_site_force_move(cli):
    for site in ("dc2", "dc3"):
        assert cli("site", "add", site).returncode == 0
    r = cli("site", "force-move", "start", "dc1", "10", "dc2", "dc3")
    assert r.returncode == 0, r.stderr
    assert "10%" in r.stdout and "dc2,dc3" in r.stdout, r.stdout
    rows = json.loads(cli("site", "force-move", "list", fmt="json").stdout)
    assert [(x["site"], x["percent"], x["destinations"]) for x in rows] == \
        [("dc1", "10", "dc2,dc3")], rows
    first_id = rows[0]["id"]
    # a second start changes the site's force move, keeping its id (the same users stay picked)
    r = cli("site", "force-move", "start", "dc1", "30", "dc3")
    assert r.returncode == 0, r.stderr
    assert cli("site", "force-move", "start", "dc2", "100", "dc1").returncode == 0
    rows = json.loads(cli("site", "force-move", "list", fmt="json").stdout)
    assert [(x["site"], x["id"] == first_id, x["percent"], x["destinations"]) for x in rows] == \
        [("dc1", True, "30", "dc3"), ("dc2", False, "100", "dc1")], rows
    assert [x["site"] for x in json.loads(cli("site", "force-move", "list", "dc2",
                                              fmt="json").stdout)] == ["dc2"]
    tab = cli("site", "force-move", "list", fmt="tab").stdout.splitlines()
    assert tab[0].split("\t") == ["site", "id", "percent", "destinations", "started",
                                  "written_by"], tab
    flow = cli("site", "force-move", "list", fmt="flow").stdout
    assert "site=dc1 " in flow and "percent=30 destinations=dc3" in flow, flow
    # refusals name what is wrong, and change nothing
    _refused(cli("site", "force-move", "start", "nosuchsite", "10", "dc2"), "nosuchsite")
    _refused(cli("site", "force-move", "start", "dc1", "101", "dc2"), "101", "0..100")
    _refused(cli("site", "force-move", "start", "dc1", "ten", "dc2"), "ten")
    _refused(cli("site", "force-move", "start", "dc1", "10", "dc1"), "dc1", "itself")
    _refused(cli("site", "force-move", "start", "dc1", "10", "dc2", "nowhere"), "nowhere")
    _refused(cli("site", "force-move", "start", "dc1", "10", "dc2", "dc2"), "dc2", "twice")
    _refused(cli("site", "force-move", "stop", "nosuchsite"), "nosuchsite")
    assert cli("site", "force-move", "start", "dc1", "10").returncode == 2
    rows = json.loads(cli("site", "force-move", "list", fmt="json").stdout)
    assert [(x["site"], x["percent"]) for x in rows] == [("dc1", "30"), ("dc2", "100")], rows
    r = cli("site", "force-move", "stop", "dc1")
    assert r.returncode == 0 and "1 force move" in r.stdout, (r.stdout, r.stderr)
    r = cli("site", "force-move", "stop", "dc1")
    assert r.returncode == 0 and "no force move" in r.stdout, (r.stdout, r.stderr)
    rows = json.loads(cli("site", "force-move", "list", fmt="json").stdout)
    assert [x["site"] for x in rows] == ["dc2"], rows


def test_site_reachability_list(cli):
    # nothing observed yet (the sites' controllers write it): an empty table, every format
    assert json.loads(cli("site", "reachability", "list", fmt="json").stdout) == []
    tab = cli("site", "reachability", "list", fmt="tab")
    assert tab.returncode == 0, tab.stderr
    assert tab.stdout.splitlines()[0].split("\t")[:5] == \
        ["observer", "target", "reachable", "since", "observed"], tab.stdout
    assert cli("site", "reachability", "list", "dc1", fmt="json").stdout.strip() == "[]"
    assert cli("site", "reachability").returncode == 2
