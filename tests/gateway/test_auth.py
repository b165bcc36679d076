"""Logon tokens and failed logons: ``LogonGuard``'s backoff (per account, per address),
expiry, bounded table and rate-limited log; token strength; generated tokens written only to
the operator's file (0600, never overwritten), never into the data directory."""

from __future__ import annotations

import json
import logging
import stat

import pytest

from gateway import auth
from gateway.auth import LogonGuard, check_token, create_tokens, peer_key, read_token_file

A = ("10.0.0.1", 40000)
B = ("10.0.0.2", 40000)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def quiet():
    """A logger that records (for the log tests) and prints nothing."""
    logger = logging.getLogger("test.logonguard")
    logger.propagate = False
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep()
    logger.addHandler(handler)
    logger.records = records
    yield logger
    logger.removeHandler(handler)


# ---------------------------------------------------------------- backoff

def test_backoff_first_failure_free_then_doubling_to_the_cap(quiet):
    g = LogonGuard(logger=quiet)
    waits = [g.failure("A001", A, now=float(i)) for i in range(12)]
    assert waits[:3] == [0.0, 0.25, 0.5]
    assert waits[3:8] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert waits[8:] == [30.0] * 4  # capped
    assert g.check("A001", A, 20.0) == pytest.approx(21.0)  # 30 s from the last one
    assert g.check("A001", A, 11.0 + 30.0) == 0.0


def test_check_is_per_account_and_per_address(quiet):
    g = LogonGuard(logger=quiet)
    g.failure("A001", A, 0.0)
    g.failure("A001", A, 0.0)  # both A001 and 10.0.0.1 now wait 0.25 s
    assert g.check("A001", B, 0.1) == pytest.approx(0.15)  # the account, from anywhere
    assert g.check("A002", A, 0.1) == pytest.approx(0.15)  # the address, for any account
    assert g.check("A002", B, 0.1) == 0.0
    assert g.check("A001", A, 0.25) == 0.0
    # guessing many accounts' tokens from one address backs the address off
    g = LogonGuard(logger=quiet)
    waits = [g.failure(f"X{i}", A, 0.0) for i in range(5)]
    assert waits == [0.0, 0.25, 0.5, 1.0, 2.0]
    # one account's token guessed from many addresses backs the account off
    g = LogonGuard(logger=quiet)
    waits = [g.failure("A001", (f"10.1.0.{i}", 1), 0.0) for i in range(5)]
    assert waits == [0.0, 0.25, 0.5, 1.0, 2.0]
    assert g.check("A001", ("10.9.9.9", 1), 0.0) == 2.0


def test_success_resets_account_and_address(quiet):
    g = LogonGuard(logger=quiet)
    for i in range(4):
        g.failure("A001", A, 0.0)
    assert g.check("A001", A, 0.0) > 0
    g.success("A001", A)
    assert g.check("A001", A, 0.0) == 0.0 and len(g) == 0
    assert g.failure("A001", A, 1.0) == 0.0  # counting starts again: the first is free


def test_entries_are_forgotten_and_the_table_is_bounded(quiet):
    g = LogonGuard(forget=600.0, max_entries=100, logger=quiet)
    for i in range(5):
        g.failure("A001", A, float(i))
    assert len(g) == 2  # the account and the address
    assert g.failure("A002", B, 1000.0) == 0.0  # the old ones expired on the way
    assert len(g) == 2 and g.check("A001", A, 1000.0) == 0.0
    assert g.failure("A001", A, 1001.0) == 0.0  # free again: forgotten
    # a flood of names and addresses: never more than max_entries, the oldest go first
    g = LogonGuard(max_entries=100, logger=quiet)
    for i in range(10_000):
        g.failure(f"N{i}", (f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 1), i * 0.001)
        assert len(g) <= 100
    assert g.check("N9999", ("10.0.39.15", 1), 10.0) == 0.0  # one failure each: free
    g.failure("N9999", ("10.0.39.15", 1), 10.0)
    assert g.check("N9999", ("10.0.39.15", 1), 10.0) == 0.25  # the newest are kept
    assert ("account", "N0") not in g._table


def test_a_forgotten_key_does_not_block(quiet):
    g = LogonGuard(forget=60.0, cap=1000.0, base=100.0, logger=quiet)
    g.failure("A001", A, 0.0)
    assert g.failure("A001", A, 0.0) == 100.0
    assert g.check("A001", A, 59.0) == pytest.approx(41.0)
    assert g.check("A001", A, 60.5) == 0.0  # forgotten even though its wait was longer


def test_peer_key():
    assert peer_key(("192.0.2.7", 5555)) == "192.0.2.7"
    assert peer_key("192.0.2.7") == "192.0.2.7"
    assert peer_key(("::ffff:192.0.2.7", 5555, 0, 0)) == "192.0.2.7"
    # one IPv6 site (a /64) is one address: a host cannot dodge by changing its suffix
    assert peer_key(("2001:db8:1:2::5", 1, 0, 0)) == peer_key(("2001:db8:1:2:ffff::9", 1, 0, 0))
    assert peer_key(("2001:db8:1:2::5", 1, 0, 0)) == "2001:db8:1:2::/64"
    assert peer_key(None) == "?" and peer_key("/tmp/sock") == "/tmp/sock"


# ---------------------------------------------------------------- the log

def test_every_failure_is_logged_and_a_flood_is_summed(quiet):
    g = LogonGuard(log_every=10.0, log_lines=10, logger=quiet)
    for i in range(50):
        g.failure(f"A{i % 3}", A, 1.0 + i * 0.01)
    lines = [r.getMessage() for r in quiet.records]
    assert len(lines) == 10 and all(r.levelno == logging.WARNING for r in quiet.records)
    assert "failed logon: account 'A0' from 10.0.0.1 (wrong token)" in lines[0]
    g.flush(5.0)  # the window has not ended
    assert len(quiet.records) == 10
    g.flush(11.0)
    lines = [r.getMessage() for r in quiet.records[10:]]
    assert lines == ["40 more failed logons from 10.0.0.1 in 10 s (accounts A0, A1, A2)"]
    g.flush(30.0)
    assert len(quiet.records) == 11  # nothing more to say
    # a new window logs one by one again; a failure after the window ended also flushes it
    g.failure("A001", B, 40.0)
    assert quiet.records[-1].getMessage().startswith("failed logon: account 'A001' from 10.0.0.2")


def test_a_flood_from_many_addresses_is_a_bounded_number_of_lines(quiet):
    g = LogonGuard(log_every=10.0, log_lines=5, max_entries=1000, logger=quiet)
    for i in range(20_000):
        g.failure("A001", (f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 1), i * 0.0001)
    g.flush(100.0)
    lines = [r.getMessage() for r in quiet.records]
    assert len(lines) == 5 + 5 + 1
    assert lines[-1] == "19990 more failed logons from 19990 other addresses in 10 s"
    assert all(" more failed logon from 10." in line for line in lines[5:10])


# ---------------------------------------------------------------- token strength

@pytest.mark.parametrize("token", ["t1", "", "short-token-123", "x" * 40, "a" * 16, "y" * 257])
def test_weak_tokens_are_refused(token):
    with pytest.raises(ValueError, match="'A001'"):
        check_token("A001", token)


def test_token_file_refuses_a_weak_token_naming_the_account(tmp_path):
    path = tmp_path / "tokens.csv"
    path.write_text("account,token\nA001,A001-test-token-0001\nA002,t2\n")
    with pytest.raises(ValueError, match=r"line 3: the token of account 'A002' is too weak"):
        read_token_file(path)
    path.write_text("account,token\nA001,A001-test-token-0001\n")
    assert read_token_file(path) == {"A001": "A001-test-token-0001"}


def test_create_tokens_refuses_weak_given_tokens_before_writing(tmp_path):
    with pytest.raises(ValueError, match="'OPS'"):
        create_tokens(tmp_path, ["A001", "OPS"], {"A001": "A001-test-token-0001", "OPS": "ops"})
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- where tokens go

def test_generated_tokens_go_to_the_operators_file_only(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    out = tmp_path / "handout.csv"
    fresh = create_tokens(data, ["A001", "A002", "OPS"], {"A002": "A002-test-token-0002"},
                          credentials_out=out)
    assert set(fresh) == {"A001", "OPS"}
    assert all(len(t) >= 16 for t in fresh.values())
    assert mode(out) == 0o600
    assert out.read_text().splitlines() == ["account,token"] + [f"{a},{t}" for a, t in
                                                                fresh.items()]
    assert read_token_file(out) == fresh  # the file is a --tokens file too
    # the data directory: the hashes alone, owner-only
    assert sorted(p.name for p in data.iterdir()) == ["tokens.json"]
    assert mode(data / "tokens.json") == 0o600
    stored = json.loads((data / "tokens.json").read_text())
    assert set(stored) == {"A001", "A002", "OPS"}
    assert auth.verify_token(fresh["A001"], stored["A001"])
    text = (data / "tokens.json").read_text()
    assert all(t not in text for t in [*fresh.values(), "A002-test-token-0002"])


def test_credentials_out_is_never_overwritten(tmp_path):
    out = tmp_path / "handout.csv"
    out.write_text("keep me\n")
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(FileExistsError):
        auth.check_credentials_out(out, data)
    with pytest.raises(FileExistsError):
        create_tokens(data, ["A001"], credentials_out=out)
    assert out.read_text() == "keep me\n"
    assert not (data / "tokens.json").exists()  # nothing half made


def test_credentials_out_must_be_outside_the_data_directory(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    for inside in (data / "credentials.csv", data / "sub" / "c.csv"):
        with pytest.raises(ValueError, match="inside the data directory"):
            auth.check_credentials_out(inside, data)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        auth.check_credentials_out(tmp_path / "nodir" / "c.csv", data)
    auth.check_credentials_out(tmp_path / "c.csv", data)  # fine


def test_without_credentials_out_the_tokens_are_returned_only(tmp_path):
    fresh = create_tokens(tmp_path, ["A001", "OPS"])
    assert set(fresh) == {"A001", "OPS"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokens.json"]
    assert create_tokens(tmp_path / ".", ["A001"], {"A001": "A001-test-token-0001"}) == {}
