"""Per-account logon tokens, stored only as salted hashes; backoff on failed logons.

Tokens are random 128-bit secrets the exchange generates (or the operator supplies), not
passwords people choose, so one salted SHA-256 is enough to make a stolen token file useless;
a slow password hash (scrypt, PBKDF2) would only stall the event loop at every logon. What
makes guessing slow instead is ``LogonGuard``: failed logons back off, per account and per
peer address, and are logged.

Generated tokens are never kept in the data directory: they go to a file the operator names
(``--credentials-out``, mode 0600, never overwritten) or are shown once; the data directory
keeps only ``tokens.json`` (the hashes, mode 0600).

>>> stored = hash_token("s3cret-token-0001")
>>> verify_token("s3cret-token-0001", stored), verify_token("guess", stored)
(True, False)
>>> stored.startswith("sha256$")
True
>>> check_token("A001", "t1")
Traceback (most recent call last):
...
ValueError: the token of account 'A001' is too weak: at least 16 characters, not one repeated
"""

from __future__ import annotations

import collections
import csv
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
from pathlib import Path

TOKENS = "tokens.json"  # account -> hash, in the data directory
LEGACY_CREDENTIALS = "credentials.csv"  # where plain tokens went before: no longer written
MIN_TOKEN_LENGTH = 16
MAX_TOKEN_LENGTH = 256  # what a Logon carries (gateway.protocol.Token)

log = logging.getLogger("cea.serve")


def hash_token(token: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.sha256(salt + token.encode()).hexdigest()
    return f"sha256${salt.hex()}${digest}"


def verify_token(token: str, stored: str) -> bool:
    try:
        scheme, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "sha256" or not isinstance(token, str):
        return False
    expected = hashlib.sha256(bytes.fromhex(salt) + token.encode()).hexdigest()
    return hmac.compare_digest(expected, digest)


def check_token(account: str, token: str) -> None:
    """``ValueError`` naming ``account`` unless ``token`` is strong enough to hand out: at
    least 16 characters, not one character repeated, at most 256 (a Logon's limit)."""
    if not isinstance(token, str) or len(token) < MIN_TOKEN_LENGTH or len(set(token)) < 2:
        raise ValueError(f"the token of account {account!r} is too weak: at least "
                         f"{MIN_TOKEN_LENGTH} characters, not one repeated")
    if len(token) > MAX_TOKEN_LENGTH:
        raise ValueError(f"the token of account {account!r} is longer than "
                         f"{MAX_TOKEN_LENGTH} characters (a Logon cannot carry it)")


def check_tokens(tokens: dict[str, str] | None) -> None:
    for account, token in (tokens or {}).items():
        check_token(account, token)


def read_token_file(path: Path) -> dict[str, str]:
    """``account,token`` CSV (plain tokens, e.g. written by hand or by a test); every token
    must pass ``check_token``."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    if not rows or [h.strip() for h in rows[0][:2]] != ["account", "token"]:
        raise ValueError(f"{path}: the header must be account,token")
    out = {}
    for n, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise ValueError(f"{path}: line {n}: an account and a token are needed")
        account, token = row[0].strip(), row[1].strip()
        try:
            check_token(account, token)
        except ValueError as e:
            raise ValueError(f"{path}: line {n}: {e}") from None
        out[account] = token
    return out


def check_credentials_out(path: Path, data_dir: Path) -> None:
    """Before anything is created: ``path`` must not exist, its directory must, and it must
    lie outside the data directory."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        raise FileExistsError(f"--credentials-out {path} already exists (it is never "
                              "overwritten)")
    parent = path.resolve().parent
    data = Path(data_dir).resolve()
    if parent == data or data in parent.parents:
        raise ValueError(f"--credentials-out {path} is inside the data directory {data_dir}: "
                         "plain tokens must be kept elsewhere")
    if not parent.is_dir():
        raise FileNotFoundError(f"--credentials-out {path}: directory {parent} does not exist")


def write_credentials(path: Path, tokens: dict[str, str]) -> None:
    """``account,token`` CSV, created mode 0600; refused (``FileExistsError``) if it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("account,token\n")
        for account, token in tokens.items():
            f.write(f"{account},{token}\n")
        f.flush()
        os.fsync(f.fileno())


def create_tokens(data_dir: Path, accounts: list[str], given: dict[str, str] | None = None,
                  credentials_out: Path | None = None) -> dict[str, str]:
    """Store hashed tokens (``tokens.json``, mode 0600) for ``accounts``: the ``given`` ones,
    else fresh random ones. Returns the fresh ones (plain) for the operator to hand out,
    written first to ``credentials_out`` if given (mode 0600, never overwritten); they are
    not kept anywhere else. Weak ``given`` tokens are refused before anything is written."""
    given = dict(given or {})
    check_tokens(given)
    fresh = {a: secrets.token_urlsafe(16) for a in accounts if a not in given}
    if fresh and credentials_out is not None:
        write_credentials(Path(credentials_out), fresh)
    hashed = {a: hash_token(t) for a, t in {**given, **fresh}.items()}
    path = Path(data_dir) / TOKENS
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)  # a leftover .tmp keeps its mode through O_CREAT
        f.write(json.dumps(hashed, indent=1, sort_keys=True))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return fresh


def load_tokens(data_dir: Path) -> dict[str, str]:
    path = Path(data_dir) / TOKENS
    return json.loads(path.read_text()) if path.exists() else {}


# ---------------------------------------------------------------- failed logons

def peer_key(address) -> str:
    """The address a backoff is kept for: the host of a ``peername`` tuple (or a host
    string); an IPv6 host by its /64 (one site's hosts share one), IPv4-mapped ones as IPv4."""
    if isinstance(address, (tuple, list)):
        address = address[0] if address else None
    if address is None:
        return "?"
    text = str(address)
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return text
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class LogonGuard:
    """Backoff on failed logons, per account and per peer address; pure logic (the caller
    passes ``now``, a monotonic clock in seconds).

    The first ``free`` failures of a key cost nothing (a typo); each later one makes the key
    wait ``base`` seconds, doubling up to ``cap``. A success resets the account and the
    address. A key without failures for ``forget`` seconds is forgotten, and the table holds
    at most ``max_entries`` keys (the least recently failed go first): memory stays bounded
    under a flood of names and addresses.

    Every failure is logged (logger ``cea.serve``, WARNING, account and address), at most
    ``log_lines`` lines one by one per ``log_every`` seconds; the rest are summed per address
    ("N more failed logons from ADDR in 10 s") when the window ends: at the next failure or
    ``flush(now)``.

    >>> g = LogonGuard(logger=logging.getLogger("doctest.quiet"))
    >>> g.check("A001", ("10.0.0.1", 5000), now=0.0)
    0.0
    >>> g.failure("A001", ("10.0.0.1", 5000), now=0.0)  # the first one is free
    0.0
    >>> g.failure("A001", ("10.0.0.1", 5001), now=1.0)
    0.25
    >>> round(g.check("A001", ("10.0.0.9", 5000), now=1.1), 3)  # the account waits, anywhere
    0.15
    >>> g.success("A001", ("10.0.0.1", 5002)); g.check("A001", "10.0.0.1", now=1.1)
    0.0
    """

    def __init__(self, free: int = 1, base: float = 0.25, cap: float = 30.0,
                 forget: float = 600.0, max_entries: int = 100_000, log_every: float = 10.0,
                 log_lines: int = 10, logger: logging.Logger | None = None):
        self.free, self.base, self.cap, self.forget = free, base, cap, forget
        self.max_entries = max_entries
        self.log_every, self.log_lines = log_every, log_lines
        self.log = logger if logger is not None else log
        # key -> [failures, blocked until, last failure]; oldest failure first
        self._table: collections.OrderedDict[tuple, list] = collections.OrderedDict()
        self._window = None  # start of the log window
        self._lines = 0  # failures logged one by one in the window
        self._summed: dict[str, list] = {}  # address -> [count, {accounts}]
        self._others = [0, set()]  # count, addresses: beyond the addresses summed one by one

    def __len__(self) -> int:
        return len(self._table)

    def delay(self, failures: int) -> float:
        """The wait after the ``failures``-th failure in a row."""
        if failures <= self.free:
            return 0.0
        return min(self.cap, self.base * 2.0 ** min(failures - self.free - 1, 64))

    def _keys(self, account, address) -> list[tuple]:
        keys = [("address", peer_key(address))]
        if account:
            keys.append(("account", str(account)))
        return keys

    def check(self, account, address, now: float) -> float:
        """Seconds ``account`` from ``address`` must still wait (0.0: it may try now)."""
        wait = 0.0
        for key in self._keys(account, address):
            entry = self._table.get(key)
            if entry is not None and entry[2] > now - self.forget:
                wait = max(wait, entry[1] - now)
        return wait

    def failure(self, account, address, now: float, reason: str = "wrong token") -> float:
        """Count a failed logon; the seconds to wait before the next try (and before the
        refusal is sent, so one connection cannot try faster)."""
        self._expire(now)
        wait = 0.0
        table = self._table
        for key in self._keys(account, address):
            entry = table.get(key)
            if entry is None:
                entry = table[key] = [0, now, now]
            else:
                table.move_to_end(key)
            entry[0] += 1
            entry[2] = now
            entry[1] = max(entry[1], now + self.delay(entry[0]))
            wait = max(wait, entry[1] - now)
        while len(table) > self.max_entries:
            table.popitem(last=False)
        self._log(account, peer_key(address), now, reason, wait)
        return wait

    def success(self, account, address) -> None:
        for key in self._keys(account, address):
            self._table.pop(key, None)

    def _expire(self, now: float) -> None:
        table, horizon = self._table, now - self.forget
        while table:
            key = next(iter(table))
            if table[key][2] > horizon:
                break
            del table[key]

    # -------------------------------------------------------------- the log

    def _log(self, account, address: str, now: float, reason: str, wait: float) -> None:
        self.flush(now)
        if self._window is None:
            self._window = now
        if self._lines < self.log_lines:
            self._lines += 1
            self.log.warning("failed logon: account %r from %s (%s); next try in %.2f s",
                             account, address, reason, wait)
            return
        summed = self._summed.get(address)
        if summed is None and len(self._summed) < 1_000:
            summed = self._summed[address] = [0, set()]
        if summed is None:
            self._others[0] += 1
            if len(self._others[1]) < 100_000:
                self._others[1].add(address)
            return
        summed[0] += 1
        if len(summed[1]) < 6:
            summed[1].add(str(account))

    def flush(self, now: float) -> None:
        """Log the sums of a window that has ended (call it now and then, e.g. each second)."""
        if self._window is None or now - self._window < self.log_every:
            return
        every = f"{self.log_every:g}"
        ranked = sorted(self._summed.items(), key=lambda kv: -kv[1][0])
        for address, (count, accounts) in ranked[:self.log_lines]:
            names = sorted(accounts)[:5]
            more = ", ..." if len(accounts) > 5 else ""
            self.log.warning("%d more failed logon%s from %s in %s s (accounts %s%s)",
                             count, "s" if count > 1 else "", address, every,
                             ", ".join(names), more)
        rest = sum(c for _, (c, _) in ranked[self.log_lines:]) + self._others[0]
        if rest:
            addresses = len(ranked[self.log_lines:]) + len(self._others[1])
            self.log.warning("%d more failed logons from %d other addresses in %s s",
                             rest, addresses, every)
        self._window, self._lines = None, 0
        self._summed, self._others = {}, [0, set()]
