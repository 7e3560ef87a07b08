#!/usr/bin/env python3
"""backends.py - run a fleet of real Dovecot backends for mailcluster tests, demo and benchmarks.

Each backend is an independent Dovecot 2.3 master process (``dovecot -F -c <conf>``) with its
own directory, self-contained dovecot.conf, base_dir, log file, mail tree and loopback address.
Backend i (1-based) listens on ``first_ip + (i - 1)`` (127.0.0.2, 127.0.0.3, ...); all backends
use the same port numbers.

Directory layout (per backend, DIR = <root_dir>/backendN):

    DIR/dovecot.conf     self-contained config (never includes /etc/dovecot)
    DIR/users            passwd-file: user1..userN, password "password" ({PLAIN})
    DIR/mail/<user>/     maildir (INBOX pre-filled with `messages` messages, owner mcvmail)
    DIR/home/<user>/     home; ManageSieve scripts go to ~/sieve, active link ~/.dovecot.sieve
    DIR/run/             base_dir (or a symlink to /tmp/mcdv-<hash> if DIR is too long for
                         unix socket paths)
    DIR/state/           state_dir
    DIR/dovecot.log      log_path = info_log_path = debug_log_path
    DIR/dovecot.out      stdout/stderr of the master (early start-up errors land here)

<root_dir>/backends.json lists the backends (name, ip, pid, ports, dir, log_path).

Useful facts for test writers
-----------------------------
* Backend identity over IMAP: the config contains ``imap_id_send = name backendN`` (unquoted:
  Dovecot strips the outer quotes of a setting value, so ``"name" "backendN"`` would turn into
  the broken ``name" "backendN``). ``ID NIL`` - before or after LOGIN - is answered with
  ``* ID ("name" "backend1")``. Extract it with ``re.search(rb'"name" "([^"]+)"', line)``.
  imaplib only allows ID in NONAUTH state; either send it before login or first do
  ``imaplib.Commands["ID"] = ("NONAUTH", "AUTH", "SELECTED")``; then
  ``imap.xatom("ID", "NIL")`` and read ``imap.untagged_responses.pop("ID")[0]``.
  The SMTP/LMTP greetings carry it too: ``hostname = backendN.mailcluster.test``.
* LMTP: ``RCPT TO:<user1>`` and ``RCPT TO:<user1@any.domain>`` both deliver to user1
  (``protocol lmtp { auth_username_format = %Ln }`` strips the domain for LMTP lookups only;
  IMAP/POP3/ManageSieve/submission use the global ``%Lu``, so log in as plain ``user1``).
* Login log lines (DIR/dovecot.log) look like
  ``Nov 29 12:00:00 imap-login: Info: Login: user=<user7>, method=PLAIN, rip=127.0.0.1,
  lip=127.0.0.2, mpid=123, session=<AbCdEf>``; ``rip`` is the client address as forwarded by
  a trusted proxy (login_trusted_networks = 127.0.0.0/8 honours ID x-originating-ip and
  XCLIENT).
* doveadm: ``doveadm -c DIR/dovecot.conf who`` (or any other doveadm command) talks to that
  backend; ``instance_name`` is "mc-backendN". ``doveadm -i`` is NOT usable because the
  instance registry lives in the private state_dir, not /var/lib/dovecot.
* doveadm HTTP API: each backend also runs doveadm's HTTP listener on its own IP,
  ``http://IP:DOVEADM_PORT/doveadm/v1`` (``Backend.doveadm_url``), with
  ``doveadm_api_key = DOVEADM_API_KEY`` (send ``Authorization: X-Dovecot-API
  base64(key)``).  Both are in backends.json (``doveadm_url``, ``doveadm_api_key``,
  ``doveadm_port``).  The port is not in ``ports`` (those are the mail protocols a proxy
  forwards to); ``--doveadm-port 0`` starts backends without the listener.

CLI
---
    backends.py start --dir DIR [--count 3] [--first-ip 127.0.0.2] [--imap-port 14300]
                      [--pop3-port 14310] [--lmtp-port 14320] [--sieve-port 14340]
                      [--submission-port 14350] [--doveadm-port 14360] [--users 100]
                      [--messages 3]
    backends.py stop --dir DIR [--name backendN]
    backends.py start-one --dir DIR --name backendN
"""

from __future__ import annotations

import argparse
import grp
import hashlib
import ipaddress
import json
import os
import pwd
import resource
import signal
import socket
import subprocess
import sys
import time
from email.utils import formatdate
from typing import Optional

DEFAULT_PORTS = {"imap": 14300, "pop3": 14310, "lmtp": 14320, "sieve": 14340, "submission": 14350}
PROTOCOLS = tuple(DEFAULT_PORTS)
# doveadm's HTTP API (service doveadm { inet_listener http }); 0 = no listener.
DEFAULT_DOVEADM_PORT = 14360
DOVEADM_API_KEY = "mailcluster-test-doveadm-key"
MAIL_USER = "mcvmail"
PASSWORD = "password"
STATE_FILE = "backends.json"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
# The submission relay points here; nothing listens on 127.0.0.1:1 so relaying fails, AUTH works.
RELAY_HOST, RELAY_PORT = "127.0.0.1", 1
# Unix socket paths are limited to 108 bytes; Dovecot appends up to ~30 chars to base_dir.
MAX_BASE_DIR_LEN = 70
FD_LIMIT = 65536
# Start-up failures of a master that mean "an earlier instance was still in the way" (a port or
# a unix socket in base_dir still held, a master.pid naming a live process): start() waits for
# the leftovers to go and tries once more.
TRANSIENT_START_ERRORS = ("Address already in use", "Socket already exists",
                          "Dovecot is already running")


class BackendError(RuntimeError):
    pass


# --------------------------------------------------------------------------- helpers


def _ensure_mail_user() -> tuple[int, int]:
    """Create the system user/group that owns all virtual mail (only if missing)."""
    try:
        grp.getgrnam(MAIL_USER)
    except KeyError:
        subprocess.run(["groupadd", "--system", MAIL_USER], check=True)
    try:
        pw = pwd.getpwnam(MAIL_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--gid", MAIL_USER,
                        "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", MAIL_USER],
                       check=True)
        pw = pwd.getpwnam(MAIL_USER)
    return pw.pw_uid, grp.getgrnam(MAIL_USER).gr_gid


def _make_traversable(path: str) -> None:
    """Dovecot's unprivileged processes (dovecot, dovenull, mcvmail) must be able to reach the
    backend dirs. Add o+x (search only, not read) to any ancestor lacking it, e.g. pytest's
    0700 /tmp/pytest-of-root."""
    path = os.path.abspath(path)
    while True:
        st = os.stat(path)
        if not st.st_mode & 0o001:
            os.chmod(path, (st.st_mode & 0o7777) | 0o001)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent


def _raise_fd_limit() -> None:
    """preexec_fn for the master: allow ~2500 concurrent connections per backend."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(FD_LIMIT, soft), max(FD_LIMIT, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _imap_answers(ip: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=timeout) as s:
            return s.recv(256).startswith(b"* OK")
    except OSError:
        return False


def _check_free(ip: str, port: int) -> Optional[str]:
    """None if (ip, port) can be bound, else the error text."""
    with socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
        except OSError as e:
            return e.strerror or str(e)
    return None


def _pid_cmdline(pid: int) -> Optional[str]:
    """Command line of a live (non-zombie) process, or None.

    A starting master execs three times (python's fork -> dovecot -> doveconf -> dovecot: the
    master has doveconf parse its config and exec it back).  Inside each execve the kernel
    shows an empty /proc/PID/cmdline for a moment; read again rather than answer "".
    """
    for _ in range(20):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    return None
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, IndexError):
            return None
        if cmdline:
            return cmdline.replace(b"\0", b" ").decode(errors="replace")
        time.sleep(0.001)
    return ""


def _group_members(pgid: int) -> list[str]:
    """'PID (comm)' of every live (non-zombie) process in process group pgid."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.find(b"(") + 1:stat.rfind(b")")].decode(errors="replace")
        fields = stat.rsplit(b")", 1)[1].split()
        # fields: state ppid pgrp ...
        if len(fields) > 2 and fields[0] != b"Z" and int(fields[2]) == pgid:
            members.append(f"{entry} ({comm})")
    return members


def _write_file(path: str, text: str, mode: int = 0o644) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- Backend


class Backend:
    """One Dovecot instance: its own dir, config, base_dir, log and loopback IP."""

    def __init__(self, name: str, ip: str, ports: dict, dir: str, pid: Optional[int] = None,
                 doveadm_port: int = 0, doveadm_api_key: str = DOVEADM_API_KEY):
        self.name = name
        self.ip = ip
        self.ports = dict(ports)
        self.doveadm_port = doveadm_port
        self.doveadm_api_key = doveadm_api_key
        self.dir = os.path.abspath(dir)
        self.log_path = os.path.join(self.dir, "dovecot.log")
        self.out_path = os.path.join(self.dir, "dovecot.out")
        self.conf_path = os.path.join(self.dir, "dovecot.conf")
        self.pid = pid
        self._proc: Optional[subprocess.Popen] = None
        # sizes of dovecot.out / dovecot.log when the master was spawned: what it wrote since
        self._spawn_offsets: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"Backend({self.name} {self.ip} pid={self.pid})"

    @property
    def doveadm_url(self) -> Optional[str]:
        """The doveadm HTTP API endpoint, or None without a listener."""
        if not self.doveadm_port:
            return None
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"http://{host}:{self.doveadm_port}/doveadm/v1"

    def _listen_ports(self) -> dict:
        """Every (name -> port) this backend binds on its IP."""
        ports = dict(self.ports)
        if self.doveadm_port:
            ports["doveadm"] = self.doveadm_port
        return ports

    # ---- setup -------------------------------------------------------------

    @property
    def base_dir(self) -> str:
        run = os.path.join(self.dir, "run")
        if len(run) <= MAX_BASE_DIR_LEN:
            return run
        return "/tmp/mcdv-" + hashlib.sha1(self.dir.encode()).hexdigest()[:12]

    def prepare(self, users: int, messages: int, uid: int, gid: int) -> None:
        """Write config + passwd-file and create missing user mail trees (idempotent:
        existing mailboxes are kept, so restarting a fleet keeps delivered mail)."""
        for sub, owner in (("", None), ("state", None), ("mail", (uid, gid)), ("home", (uid, gid))):
            p = os.path.join(self.dir, sub)
            os.makedirs(p, exist_ok=True)
            os.chmod(p, 0o755)
            if owner:
                os.chown(p, *owner)
        if self.base_dir != os.path.join(self.dir, "run"):
            link = os.path.join(self.dir, "run")
            if not os.path.islink(link):
                os.symlink(self.base_dir, link)
        _write_file(os.path.join(self.dir, "users"),
                    "".join(f"user{i}:{{PLAIN}}{PASSWORD}:{uid}:{gid}::"
                            f"{self.dir}/home/user{i}::\n" for i in range(1, users + 1)))
        _write_file(self.conf_path, self.render_config(uid))
        self._create_mail(users, messages, uid, gid)

    def _create_mail(self, users: int, messages: int, uid: int, gid: int) -> None:
        now = int(time.time())
        date = formatdate(now, localtime=False)
        pid = os.getpid()
        for i in range(1, users + 1):
            user = f"user{i}"
            home = os.path.join(self.dir, "home", user)
            if not os.path.isdir(home):
                os.mkdir(home, 0o700)
                os.chown(home, uid, gid)
            md = os.path.join(self.dir, "mail", user)
            if os.path.isdir(md):
                continue
            tmp_md = md + ".creating"
            for sub in ("", "cur", "new", "tmp"):
                p = os.path.join(tmp_md, sub)
                os.makedirs(p, 0o700, exist_ok=True)
                os.chown(p, uid, gid)
            for n in range(1, messages + 1):
                body = (f"From: Sender {n} <sender{n}@example.com>\n"
                        f"To: {user} <{user}@example.com>\n"
                        f"Subject: Test message {n} for {user}\n"
                        f"Date: {date}\n"
                        f"Message-ID: <{now}.{n}.{user}.{self.name}@mailcluster.test>\n"
                        f"MIME-Version: 1.0\n"
                        f"Content-Type: text/plain; charset=us-ascii\n"
                        f"\n"
                        f"Hello {user}, this is message {n} stored on {self.name}.\n")
                data = body.encode()
                fn = os.path.join(tmp_md, "cur",
                                  f"{now}.M{n}P{pid}.{self.name},S={len(data)}:2,")
                with open(fn, "wb") as f:
                    f.write(data)
                os.chown(fn, uid, gid)
                os.utime(fn, (now - messages + n, now - messages + n))
            os.rename(tmp_md, md)

    def render_config(self, uid: int) -> str:
        d, p = self.dir, self.ports
        return f"""\
# Generated by scripts/backends.py for {self.name} - do not edit, rewritten on every start.
# Self-contained: nothing from /etc/dovecot is included.
instance_name = mc-{self.name}
base_dir = {self.base_dir}
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
debug_log_path = {d}/dovecot.log
log_timestamp = "%b %d %H:%M:%S "
hostname = {self.name}.mailcluster.test
postmaster_address = postmaster@mailcluster.test

protocols = imap pop3 lmtp sieve submission
listen = {self.ip}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_username_format = %Lu
auth_verbose = yes
login_trusted_networks = 127.0.0.0/8
verbose_proctitle = yes
shutdown_clients = yes

# All virtual users share the system uid {MAIL_USER}.
first_valid_uid = {uid}
mail_location = maildir:{d}/mail/%u
mail_max_userip_connections = 100

passdb {{
  driver = passwd-file
  args = scheme=PLAIN {d}/users
}}
userdb {{
  driver = passwd-file
  args = {d}/users
}}

# Identity: "ID NIL" answers * ID ("name" "{self.name}"). Must stay unquoted (see header).
imap_id_send = name {self.name}
imap_id_log = *

# Capacity: ~2500 concurrent connections per backend. Login services run in high-performance
# mode (one process serves up to 2000 clients); imap/pop3 processes are reused (service_count)
# but serve one client at a time, hence the large process_limit.
default_client_limit = 4000
default_process_limit = 200
default_vsz_limit = 512M

service auth {{
  client_limit = 6000
}}
service imap-login {{
  inet_listener imap {{
    address = {self.ip}
    port = {p["imap"]}
  }}
  inet_listener imaps {{
    port = 0
  }}
  service_count = 0
  process_min_avail = 1
  process_limit = 4
  client_limit = 2000
}}
service imap {{
  service_count = 1000
  process_limit = 3000
}}
service pop3-login {{
  inet_listener pop3 {{
    address = {self.ip}
    port = {p["pop3"]}
  }}
  inet_listener pop3s {{
    port = 0
  }}
  service_count = 0
  process_min_avail = 1
  process_limit = 4
  client_limit = 2000
}}
service pop3 {{
  service_count = 1000
  process_limit = 1000
}}
service lmtp {{
  inet_listener lmtp {{
    address = {self.ip}
    port = {p["lmtp"]}
  }}
}}
service managesieve-login {{
  inet_listener sieve {{
    address = {self.ip}
    port = {p["sieve"]}
  }}
}}
service submission-login {{
  inet_listener submission {{
    address = {self.ip}
    port = {p["submission"]}
  }}
  inet_listener submissions {{
    port = 0
  }}
}}

protocol lmtp {{
  # RCPT TO:<user1> and RCPT TO:<user1@example.com> both resolve to user1.
  auth_username_format = %Ln
  mail_plugins = $mail_plugins sieve
}}
protocol sieve {{
}}

submission_relay_host = {RELAY_HOST}
submission_relay_port = {RELAY_PORT}
{self._render_doveadm()}
plugin {{
  sieve = file:~/sieve;active=~/.dovecot.sieve
}}
"""

    def _render_doveadm(self) -> str:
        if not self.doveadm_port:
            return ""
        return f"""
# doveadm HTTP API (kicks during group moves): Authorization: X-Dovecot-API base64(key)
doveadm_api_key = {self.doveadm_api_key}
service doveadm {{
  inet_listener http {{
    address = {self.ip}
    port = {self.doveadm_port}
  }}
}}
"""

    # ---- process control ---------------------------------------------------

    def _is_ours(self, pid: int) -> bool:
        cmd = _pid_cmdline(pid)
        return cmd is not None and "dovecot" in cmd and self.conf_path in cmd

    def is_running(self) -> bool:
        if self.pid is None:
            return False
        if self._proc is not None and self._proc.pid == self.pid:
            # Our own child: its pid cannot be reused before we reap it, so poll() is the whole
            # answer.  (Its command line is not: it is python's until the exec, then doveconf's,
            # and empty for a moment inside each exec.)
            return self._proc.poll() is None
        return self._is_ours(self.pid)

    def spawn(self) -> None:
        """Launch the master without waiting (use start() for launch + wait)."""
        if self.is_running():
            raise BackendError(f"{self.name} is already running (pid {self.pid})")
        busy = [f"{proto} {self.ip}:{port} ({err})" for proto, port in self._listen_ports().items()
                 if (err := _check_free(self.ip, port))]
        if busy:
            raise BackendError(f"{self.name}: cannot start, address in use: " + ", ".join(busy))
        os.makedirs(self.base_dir, 0o755, exist_ok=True)
        self._spawn_offsets = {}
        for path in (self.out_path, self.log_path):
            try:
                self._spawn_offsets[path] = os.path.getsize(path)
            except FileNotFoundError:
                self._spawn_offsets[path] = 0
        out = open(self.out_path, "ab")
        try:
            self._proc = subprocess.Popen(
                ["dovecot", "-F", "-c", self.conf_path],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_raise_fd_limit, cwd=self.dir)
        finally:
            out.close()
        self.pid = self._proc.pid

    def startup_output(self) -> str:
        """What the master wrote to dovecot.out and dovecot.log since the last spawn()."""
        parts = []
        for path in (self.out_path, self.log_path):
            try:
                with open(path, "rb") as f:
                    f.seek(self._spawn_offsets.get(path, 0))
                    parts.append(f.read().decode(errors="replace"))
            except FileNotFoundError:
                pass
        return "".join(parts)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            # Ports were verified free before spawning, so an answer comes from our master.
            if self.is_running() and _imap_answers(self.ip, self.ports["imap"]):
                return
            if not self.is_running():
                status = self._proc.returncode if self._proc is not None else None
                output = self.startup_output().strip() or "(nothing)"
                raise BackendError(f"{self.name} ({self.ip}) exited during start-up "
                                   f"(pid {self.pid}, exit status {status}); its output:\n"
                                   + output)
            if time.monotonic() > deadline:
                raise BackendError(f"{self.name} ({self.ip}:{self.ports['imap']}) did not answer "
                                   f"IMAP within {timeout:.0f}s\n" + self.log_tail())
            time.sleep(0.05)

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start (again) with the existing config/mail and wait until IMAP answers.

        If the master exits during start-up because something of an earlier instance was still
        in its way (see TRANSIENT_START_ERRORS), wait for that to go and try once more."""
        if not os.path.exists(self.conf_path):
            raise BackendError(f"{self.name}: {self.conf_path} missing; use Fleet.start() first")
        deadline = time.monotonic() + timeout
        self.spawn()
        try:
            self.wait_ready(timeout)
            return
        except BackendError:
            output = self.startup_output()
            cause = next((c for c in TRANSIENT_START_ERRORS if c in output), None)
            if self.is_running() or cause is None:
                raise
        line = next(l for l in output.splitlines() if cause in l)
        print(f"backends.py: {self.name}: master exited during start-up ({line.strip()}); "
              "waiting for the old instance's leftovers and starting once more", file=sys.stderr)
        old_pid = self.pid
        self._proc = None
        self.pid = None
        try:
            os.killpg(old_pid, signal.SIGKILL)  # whatever the failed master had forked
        except (ProcessLookupError, PermissionError):
            pass
        self._wait_released(old_pid, STOP_TIMEOUT)
        self.spawn()
        self.wait_ready(max(1.0, deadline - time.monotonic()))

    def signal_stop(self) -> None:
        if self.is_running():
            os.kill(self.pid, signal.SIGTERM)

    def _leftovers(self, pgid: int) -> list[str]:
        """What is left of the instance whose master was pgid that would make a new master
        exit at start-up: live processes of its group (they hold the unix sockets in base_dir,
        which a new master refuses to replace: "Socket already exists"), listening ports."""
        left = [f"process {m}" for m in _group_members(pgid)]
        left += [f"{proto} {self.ip}:{port} ({err})"
                 for proto, port in self._listen_ports().items()
                 if (err := _check_free(self.ip, port))]
        return left

    def _wait_released(self, pgid: Optional[int], timeout: float) -> None:
        """Wait until nothing of the stopped instance pgid blocks a new start (see _leftovers),
        then remove its master.pid if the master could not (SIGKILL): a new master refuses to
        start while the pid named there exists, and the pid may have been reused meanwhile."""
        if pgid is None:
            return
        deadline = time.monotonic() + timeout
        while left := self._leftovers(pgid):
            if time.monotonic() > deadline:
                raise BackendError(f"{self.name}: still in the way {timeout:.0f}s after its "
                                   f"master (pid {pgid}) exited: " + ", ".join(left))
            time.sleep(0.05)
        pid_file = os.path.join(self.base_dir, "master.pid")
        try:
            with open(pid_file) as f:
                if f.read().strip() == str(pgid):
                    os.unlink(pid_file)
        except FileNotFoundError:
            pass

    def wait_stopped(self, timeout: float = STOP_TIMEOUT) -> None:
        pid = self.pid
        if pid is None:
            return
        deadline = time.monotonic() + timeout
        while self.is_running() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.is_running():
            # Kill the master and whatever is left of its process group (the master is the
            # session leader we created with start_new_session).
            for target in (-pid, pid):
                try:
                    os.kill(target, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self._proc is not None and self._proc.pid == pid:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        # Children that outlive the master (Dovecot 2.3.19's doveadm-server hangs forever on a
        # POST whose API key is wrong, and keeps log/config/stats alive) are in its process
        # group; the group id cannot be reused while any of them lives.
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        # SIGKILL is delivered, not waited for: return only once the group is gone and the
        # ports are free, so that a start() right after this one finds nothing in its way.
        self._wait_released(pid, STOP_TIMEOUT)
        self.pid = None
        self._proc = None

    def stop(self) -> None:
        """SIGTERM the master, wait up to 10 s, then SIGKILL; return once no process of the
        instance is left and its ports are free."""
        self.signal_stop()
        self.wait_stopped()

    # ---- logs --------------------------------------------------------------

    def log_text(self) -> str:
        parts = []
        for path in (self.out_path, self.log_path):
            try:
                with open(path, errors="replace") as f:
                    parts.append(f.read())
            except FileNotFoundError:
                pass
        return "".join(parts)

    def log_tail(self, lines: int = 20) -> str:
        tail = self.log_text().splitlines()[-lines:]
        return f"--- last log lines of {self.name} ({self.dir}) ---\n" + "\n".join(tail)

    def to_dict(self) -> dict:
        return {"name": self.name, "ip": self.ip, "pid": self.pid, "ports": self.ports,
                "dir": self.dir, "log_path": self.log_path, "doveadm_port": self.doveadm_port,
                "doveadm_url": self.doveadm_url, "doveadm_api_key": self.doveadm_api_key}


# --------------------------------------------------------------------------- Fleet


class Fleet:
    """N backends backendN on consecutive loopback IPs, sharing the same port numbers."""

    def __init__(self, root_dir: str, count: int = 3, first_ip: str = "127.0.0.2",
                 ports: Optional[dict] = None, users: int = 100, messages: int = 3,
                 doveadm_port: int = DEFAULT_DOVEADM_PORT):
        unknown = set(ports or {}) - set(PROTOCOLS)
        if unknown:
            raise ValueError(f"unknown port keys: {sorted(unknown)}")
        self.root_dir = os.path.abspath(root_dir)
        self.count = count
        self.first_ip = first_ip
        self.ports = {**DEFAULT_PORTS, **(ports or {})}
        self.users = users
        self.messages = messages
        self.doveadm_port = doveadm_port
        base = ipaddress.ip_address(first_ip)
        self.backends: list[Backend] = [
            Backend(f"backend{i}", str(base + (i - 1)), self.ports,
                    os.path.join(self.root_dir, f"backend{i}"), doveadm_port=doveadm_port)
            for i in range(1, count + 1)]

    def backend(self, name: str) -> Backend:
        for b in self.backends:
            if b.name == name:
                return b
        raise KeyError(f"no backend named {name!r} in {self.root_dir}")

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Create config/users/mail for all backends, start them and wait for IMAP."""
        uid, gid = _ensure_mail_user()
        os.makedirs(self.root_dir, exist_ok=True)
        _make_traversable(self.root_dir)
        for b in self.backends:
            b.prepare(self.users, self.messages, uid, gid)
        try:
            for b in self.backends:
                b.spawn()
            self.write_state()
            deadline = time.monotonic() + timeout
            for b in self.backends:
                b.wait_ready(max(0.5, deadline - time.monotonic()))
        except BaseException:
            try:
                self.stop()
            except BackendError:
                pass
            raise
        self.write_state()

    def stop(self) -> None:
        for b in self.backends:
            b.signal_stop()
        errors = []
        for b in self.backends:
            try:
                b.wait_stopped()
            except BackendError as e:
                errors.append(str(e))
        self.write_state()
        if errors:
            raise BackendError("\n".join(errors))

    def write_state(self) -> None:
        os.makedirs(self.root_dir, exist_ok=True)
        _write_file(os.path.join(self.root_dir, STATE_FILE),
                    json.dumps([b.to_dict() for b in self.backends], indent=2) + "\n")

    @classmethod
    def load(cls, root_dir: str) -> "Fleet":
        root_dir = os.path.abspath(root_dir)
        with open(os.path.join(root_dir, STATE_FILE)) as f:
            entries = json.load(f)
        fleet = cls.__new__(cls)
        fleet.root_dir = root_dir
        fleet.backends = [Backend(e["name"], e["ip"], e["ports"], e["dir"], e.get("pid"),
                                  doveadm_port=e.get("doveadm_port") or 0,
                                  doveadm_api_key=e.get("doveadm_api_key", DOVEADM_API_KEY))
                          for e in entries]
        fleet.count = len(fleet.backends)
        fleet.first_ip = fleet.backends[0].ip if fleet.backends else "127.0.0.2"
        fleet.ports = dict(fleet.backends[0].ports) if fleet.backends else dict(DEFAULT_PORTS)
        fleet.doveadm_port = fleet.backends[0].doveadm_port if fleet.backends else 0
        fleet.users = fleet.messages = None  # unknown; only needed to (re)create mail
        return fleet


# --------------------------------------------------------------------------- CLI


def _describe(b: Backend) -> str:
    ports = " ".join(f"{k}={v}" for k, v in b._listen_ports().items())
    return f"{b.name} {b.ip} pid={b.pid} {ports}"


def main(argv: Optional[list] = None) -> int:
    ap = argparse.ArgumentParser(description="Run a fleet of Dovecot backends for mailcluster.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("start", help="create and start a fleet")
    st.add_argument("--dir", required=True)
    st.add_argument("--count", type=int, default=3)
    st.add_argument("--first-ip", default="127.0.0.2")
    for proto, port in DEFAULT_PORTS.items():
        st.add_argument(f"--{proto}-port", type=int, default=port)
    st.add_argument("--doveadm-port", type=int, default=DEFAULT_DOVEADM_PORT,
                    help="doveadm HTTP API port (0 = none)")
    st.add_argument("--users", type=int, default=100)
    st.add_argument("--messages", type=int, default=3)
    sp = sub.add_parser("stop", help="stop the fleet or one backend")
    sp.add_argument("--dir", required=True)
    sp.add_argument("--name")
    so = sub.add_parser("start-one", help="restart one previously stopped backend")
    so.add_argument("--dir", required=True)
    so.add_argument("--name", required=True)
    args = ap.parse_args(argv)

    try:
        if args.cmd == "start":
            ports = {p: getattr(args, f"{p}_port") for p in PROTOCOLS}
            fleet = Fleet(args.dir, count=args.count, first_ip=args.first_ip, ports=ports,
                          users=args.users, messages=args.messages,
                          doveadm_port=args.doveadm_port)
            fleet.start()
            for b in fleet.backends:
                print(_describe(b))
        elif args.cmd == "stop":
            fleet = Fleet.load(args.dir)
            if args.name:
                fleet.backend(args.name).stop()
                fleet.write_state()
            else:
                fleet.stop()
        elif args.cmd == "start-one":
            fleet = Fleet.load(args.dir)
            b = fleet.backend(args.name)
            b.start()
            fleet.write_state()
            print(_describe(b))
    except (BackendError, KeyError, OSError, ValueError) as e:
        print(f"backends.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
