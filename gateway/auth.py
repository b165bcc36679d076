"""Per-account logon tokens, stored only as salted hashes.

Tokens are random 128-bit secrets the exchange generates (or the operator supplies), not
passwords people choose, so one salted SHA-256 is enough to make a stolen token file useless;
a slow password hash (scrypt, PBKDF2) would only stall the event loop at every logon.

>>> stored = hash_token("s3cret-token")
>>> verify_token("s3cret-token", stored), verify_token("guess", stored)
(True, False)
>>> stored.startswith("sha256$")
True
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

TOKENS = "tokens.json"  # account -> hash, in the data directory
CREDENTIALS = "credentials.csv"  # plain tokens generated at first start, owner-readable only


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


def read_token_file(path: Path) -> dict[str, str]:
    """``account,token`` CSV (plain tokens, e.g. written by hand or by a test)."""
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
        out[row[0].strip()] = row[1].strip()
    return out


def create_tokens(data_dir: Path, accounts: list[str], given: dict[str, str] | None = None
                  ) -> Path | None:
    """Store hashed tokens for ``accounts``: the ``given`` ones, else fresh random ones written
    once to ``credentials.csv`` (mode 0600) for the operator to hand out. Returns that file's
    path if one was written."""
    given = dict(given or {})
    fresh = {a: secrets.token_urlsafe(16) for a in accounts if a not in given}
    hashed = {a: hash_token(t) for a, t in {**given, **fresh}.items()}
    path = Path(data_dir) / TOKENS
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(hashed, indent=1, sort_keys=True))
    os.replace(tmp, path)
    if not fresh:
        return None
    cred = Path(data_dir) / CREDENTIALS
    fd = os.open(cred, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("account,token\n")
        for account, token in fresh.items():
            f.write(f"{account},{token}\n")
    return cred


def load_tokens(data_dir: Path) -> dict[str, str]:
    path = Path(data_dir) / TOKENS
    return json.loads(path.read_text()) if path.exists() else {}
