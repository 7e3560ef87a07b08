"""Bad configuration files are refused whole, by daemon and CLI, naming file:line and key."""

from __future__ import annotations

import re
import subprocess

import pytest

from mchelpers import CLI, DAEMON, free_port, port_accepts, spawn_retrying, wait_for


def _base_lines(tmp_path, port):
    return [
        "site = dc1",
        f"geodb = sqlite:{tmp_path}/geodb.sqlite",
        f"localdb = {tmp_path}/localdb.sqlite",
        "group_count = 256",
        "listen {",
        f"  imap = 127.0.0.1:{port}",
        "}",
        "backend_port {",
        "  imap = 35300",
        "}",
        "proxy_timeout = 3s",
    ]


def _write(tmp_path, lines):
    path = tmp_path / "bad.conf"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _run_daemon(path):
    return spawn_retrying(subprocess.run, [DAEMON, "-c", path, "-F"], capture_output=True,
                          text=True, timeout=15)


def _run_cli(path):
    return spawn_retrying(subprocess.run, [CLI, "-c", path, "backend", "list"],
                          capture_output=True, text=True, timeout=15)


# (name, edit(lines) -> lines, 1-based line of the problem or None, words the message must name)
CASES = [
    ("unknown_key", lambda l: l[:3] + ["frobnicate = 1"] + l[3:], 4, ["frobnicate"]),
    ("unknown_key_in_section", lambda l: l[:6] + ["  gopher = 127.0.0.1:1110"] + l[6:], 7,
     ["gopher", "listen"]),
    ("bad_uint", lambda l: [x if not x.startswith("group_count") else "group_count = lots"
                            for x in l], 4, ["group_count", "lots"]),
    ("bad_duration", lambda l: [x if not x.startswith("proxy_timeout") else
                                "proxy_timeout = 3 fortnights" for x in l], 11,
     ["proxy_timeout"]),
    ("bad_address", lambda l: [x if "imap = 127" not in x else "  imap = nowhere" for x in l], 6,
     ["imap", "nowhere"]),
    ("bad_enum", lambda l: l + ["plaintext_auth = sometimes"], 12, ["plaintext_auth", "sometimes"]),
    ("out_of_range", lambda l: l + ["auth_failures_max = 0"], 12, ["auth_failures_max"]),
    ("duplicate_key", lambda l: l + ["site = dc2"], 12, ["site"]),
    ("missing_site", lambda l: l[1:], None, ["site"]),
    ("unclosed_section", lambda l: l + ["listen {", "  imaps = 127.0.0.1:1"], 12, ["listen"]),
    ("probe_interval_too_short", lambda l: l + ["probe_interval = 50ms"], None,
     ["probe_interval", "100ms"]),
    ("controller_lease_too_short", lambda l: l + ["controller_lease = 1s"], None,
     ["controller_lease", "2s"]),
    ("test_username_without_password", lambda l: l + ["backend_test_username = probe"], None,
     ["backend_test_username", "backend_test_password"]),
    # 5 x %{backend} may become 5 x 63 bytes: more than 255
    ("test_username_too_long", lambda l: l + ["backend_test_username = " + "%{backend}" * 5,
                                              "backend_test_password = secret"], None,
     ["backend_test_username", "255"]),
]


@pytest.mark.parametrize("name,edit,line,words", CASES, ids=[c[0] for c in CASES])
def test_bad_config_refused_by_daemon_and_cli(tmp_path, name, edit, line, words):
    port = free_port()
    path = _write(tmp_path, edit(_base_lines(tmp_path, port)))

    r = _run_daemon(path)
    assert r.returncode != 0, f"daemon accepted a bad config ({name}): {r.stderr}"
    assert not port_accepts("127.0.0.1", port)
    for where, res in (("daemon", r), ("cli", _run_cli(path))):
        assert res.returncode != 0, (where, res.stdout)
        if where == "cli":
            assert res.returncode == 1, (where, res.returncode, res.stderr)
        msg = res.stderr
        if line is not None:
            assert re.search(rf"{re.escape(path)}:{line}:", msg), (where, msg)
        else:
            assert path in msg, (where, msg)
        for w in words:
            assert w in msg, (where, w, msg)


def test_valid_base_config_is_accepted(tmp_path):
    """The base the bad cases are made from is itself fine (so the refusals are about the edit)."""
    port = free_port()
    path = _write(tmp_path, _base_lines(tmp_path, port))
    r = spawn_retrying(subprocess.run, [CLI, "-c", path, "site", "add", "dc1"],
                       capture_output=True, text=True, timeout=15)
    assert r.returncode == 0, r.stderr
    p = spawn_retrying(subprocess.Popen, [DAEMON, "-c", path, "-F"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: port_accepts("127.0.0.1", port) or p.poll() is not None, 10,
                 message="daemon to listen")
        assert p.poll() is None, p.stderr.read()
        assert port_accepts("127.0.0.1", port)
    finally:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)
    assert p.returncode == 0


def test_missing_config_file_is_refused(tmp_path):
    path = str(tmp_path / "nope.conf")
    r = _run_daemon(path)
    assert r.returncode != 0 and path in r.stderr, r.stderr
    r = _run_cli(path)
    assert r.returncode == 1 and path in r.stderr, r.stderr


def test_group_count_change_is_refused(tmp_path):
    """A GeoDB made with one group_count refuses another (it would move almost every user)."""
    port = free_port()
    lines = _base_lines(tmp_path, port)
    path = _write(tmp_path, lines)
    assert _run_cli(path).returncode == 0   # creates the GeoDB with 256 groups
    assert spawn_retrying(subprocess.run, [CLI, "-c", path, "site", "add", "dc1"],
                          capture_output=True, timeout=15).returncode == 0
    path = _write(tmp_path, [x if not x.startswith("group_count") else "group_count = 512"
                             for x in lines])
    r = _run_daemon(path)
    assert r.returncode != 0 and "group_count" in r.stderr, r.stderr
    r = _run_cli(path)
    assert r.returncode == 1 and "group_count" in r.stderr, r.stderr
