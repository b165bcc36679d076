"""A throwaway PostgreSQL server for the ledger benchmark and the tests, on loopback only
(a development tool: ``cea bench ledger`` and ``tests/ledger/conftest.py`` start one).

``start_postgres(base_dir)`` runs ``initdb`` into ``base_dir`` and starts ``postgres``
listening on 127.0.0.1 at a free port (its socket directory inside ``base_dir`` too), with
``fsync`` on, creates database ``cea`` and returns (conninfo, stop). PostgreSQL refuses to
run as root, so as root the cluster belongs to the ``postgres`` system user (the Debian
package creates it) and the server runs under ``runuser``. The binaries come from the Debian
package (``apt-get install postgresql``, done by ``.ci/run``) or whatever ``pg_config`` /
``PATH`` names.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["postgres_unavailable_reason", "start_postgres"]


def _bindir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                   key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0)
    if found:
        return found[-1]
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                             timeout=30)
        if out.returncode == 0 and Path(out.stdout.strip(), "initdb").exists():
            return out.stdout.strip()
    initdb = shutil.which("initdb")
    return str(Path(initdb).parent) if initdb else None


def postgres_unavailable_reason() -> str | None:
    """None when a server can be started here, else why not."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg 3 is not installed"
    bindir = _bindir()
    if bindir is None:
        return "no PostgreSQL server binaries (apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server as"
        if not shutil.which("runuser"):
            return "running as root without runuser"
    return None


def free_port() -> int:
    """A TCP port free on loopback now (bound and released: a later bind may race)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_postgres(base_dir: str, timeout: float = 60.0):
    """Start a fresh cluster in ``base_dir``; return (conninfo, stop)."""
    reason = postgres_unavailable_reason()
    if reason:
        raise RuntimeError(reason)
    import psycopg

    bindir = Path(_bindir())
    base = Path(base_dir)
    data, sock = base / "data", base / "sock"
    base.mkdir(parents=True, exist_ok=True)
    sock.mkdir(exist_ok=True)
    prefix: list[str] = []
    user = pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() == 0:
        user = "postgres"
        prefix = ["runuser", "-u", "postgres", "--"]
        entry = pwd.getpwnam("postgres")
        for path in (base, sock):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        # the server must reach base_dir: let others traverse its parents
        for parent in base.parents:
            if str(parent) in ("/", ""):
                break
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, mode | 0o001)
    subprocess.run(prefix + [str(bindir / "initdb"), "-D", str(data), "-U", user, "-A", "trust",
                             "-E", "UTF8", "--no-locale"], check=True, capture_output=True,
                   timeout=300)
    port = free_port()
    log = base / "server.log"
    log.touch()
    if os.geteuid() == 0:
        os.chown(log, pwd.getpwnam("postgres").pw_uid, pwd.getpwnam("postgres").pw_gid)
    subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w",
                             "-t", str(int(timeout)), "-o",
                             f"-c listen_addresses=127.0.0.1 -c port={port} "
                             f"-c unix_socket_directories={sock} -c fsync=on "
                             f"-c max_connections=20", "start"],
                   check=True, capture_output=True, timeout=timeout + 30)
    conninfo = f"host=127.0.0.1 port={port} user={user} dbname=postgres"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute("CREATE DATABASE cea")
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    stopped = []

    def stop() -> None:
        if stopped:
            return
        stopped.append(True)
        subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w",
                                 "stop"], capture_output=True, timeout=120)

    return f"host=127.0.0.1 port={port} user={user} dbname=cea", stop
