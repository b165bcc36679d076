"""``cea serve --config FILE``: the server's options in a TOML file.

The keys are the options' long names with underscores (``--fee-bps-listed`` is
``fee_bps_listed``), with the same values: numbers as TOML integers, ``fsync`` ``"on"`` or
``"off"`` (or ``true`` / ``false``), ``recover`` ``true`` or ``false``, ``prior_close`` a list of
strings as the repeated option takes them (``["60.00"]``, or ``["CEA=60.00", "CEB=55.00"]``
one per instrument; a single string is one). Paths are relative to the current directory, as
on the command line. A key left out takes the option's default; an option given on the
command line overrides the file. An unknown key, a value of the wrong type or out of range
is an error naming the key. ``cea serve --print-config`` prints every key with its default
(the optional ones commented out), and reads back as the defaults.

>>> read_config_text(b'port = 7000\\nprior_close = ["CEA=61.00"]\\nfsync = "off"', "f.toml")
{'port': 7000, 'prior_close': ['CEA=61.00'], 'fsync': 'off'}
>>> read_config_text(b'prot = 7000', "f.toml")
Traceback (most recent call last):
...
cea.serveconfig.ServeConfigError: f.toml: unknown key 'prot' (cea serve --print-config lists them)
>>> read_config_text(b'port = 70000', "f.toml")
Traceback (most recent call last):
...
cea.serveconfig.ServeConfigError: f.toml: port: expected `int` <= 65535
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Annotated, Literal, Union

import msgspec
from msgspec import UNSET, Meta, UnsetType


class ServeConfigError(ValueError):
    """The configuration file cannot be used; the message names the file and the key."""


def _int(ge: int, le: int | None = None):
    return Union[Annotated[int, Meta(ge=ge) if le is None else Meta(ge=ge, le=le)], UnsetType]


_Str = Union[str, UnsetType]


class ServeFile(msgspec.Struct, forbid_unknown_fields=True):
    """The keys a configuration file may hold (the ranges are those of the options)."""

    data_dir: _Str = UNSET
    host: _Str = UNSET
    port: _int(0, 65535) = UNSET
    fix_port: _int(0, 65535) = UNSET
    web_port: _int(0, 65535) = UNSET
    web_host: _Str = UNSET
    prior_close: Union[list[str], str, UnsetType] = UNSET
    accounts: _Str = UNSET
    tokens: _Str = UNSET
    credentials_out: _Str = UNSET
    fsync: Union[Literal["on", "off"], bool, UnsetType] = UNSET
    recover: Union[bool, UnsetType] = UNSET
    clock: Union[Literal["sim", "wall"], UnsetType] = UNSET
    start: _Str = UNSET
    rate_limit: _int(0) = UNSET
    burst: _int(1) = UNSET
    query_rate: _int(0) = UNSET
    query_burst: _int(1) = UNSET
    max_open_orders: _int(0) = UNSET
    max_connections: _int(1) = UNSET
    backlog: _int(1) = UNSET
    operator: _Str = UNSET
    snapshot_every: _int(1) = UNSET
    fee_bps_listed: _int(0, 1000) = UNSET
    fee_bps_block: _int(0, 1000) = UNSET
    ledger: _Str = UNSET
    engine: Union[Literal["numba", "reference"], UnsetType] = UNSET


#: Every key, in the options' order.
KEYS = tuple(ServeFile.__struct_fields__)

#: What ``--print-config`` shows, commented out, for the keys that have no default.
EXAMPLES = {"fix_port": 9878, "accounts": "accounts.csv", "tokens": "tokens.csv",
            "credentials_out": "credentials.csv", "start": "2024-03-04"}

#: The keys of a fixed set of values, and what they are.
CHOICES = {"fsync": '"on" or "off" (or true or false)', "clock": '"sim" or "wall"',
           "engine": '"numba" or "reference"'}

_AT = re.compile(r"^(.*) - at `\$\.([a-z_]+)(.*)`$")


def read_config(path: Path) -> dict:
    """The keys set in the TOML file ``path`` and their values (``ServeConfigError``)."""
    try:
        text = Path(path).read_bytes()
    except OSError as e:
        raise ServeConfigError(f"--config {path}: {e.strerror or e}") from None
    return read_config_text(text, str(path))


def read_config_text(text: bytes, name: str) -> dict:
    try:
        cfg = msgspec.toml.decode(text, type=ServeFile)
    except msgspec.ValidationError as e:
        message = str(e)
        unknown = re.match(r"^Object contains unknown field `(.*)`", message)
        if unknown:
            raise ServeConfigError(f"{name}: unknown key {unknown.group(1)!r} (cea serve "
                                   "--print-config lists them)") from None
        at = _AT.match(message)
        choice = re.match(r"^Invalid enum value (.*)$", at.group(1)) if at else None
        if choice and at.group(2) in CHOICES:
            raise ServeConfigError(f"{name}: {at.group(2)} must be {CHOICES[at.group(2)]}, "
                                   f"not {choice.group(1)}") from None
        if at:
            what = at.group(1)
            raise ServeConfigError(f"{name}: {at.group(2)}{at.group(3)}: "
                                   f"{what[:1].lower()}{what[1:]}") from None
        raise ServeConfigError(f"{name}: {message}") from None
    except msgspec.DecodeError as e:
        raise ServeConfigError(f"{name}: not valid TOML: {e}") from None
    values = {k: getattr(cfg, k) for k in KEYS if getattr(cfg, k) is not UNSET}
    if isinstance(values.get("prior_close"), str):
        values["prior_close"] = [values["prior_close"]]
    if isinstance(values.get("fsync"), bool):
        values["fsync"] = "on" if values["fsync"] else "off"
    return values


def _toml_value(value) -> str:
    value = getattr(value, "value", value)  # an Enum member: its value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string: JSON's escapes are TOML's


def default_toml(options: list[tuple[str, object, str]]) -> str:
    """The configuration file of the defaults: ``options`` are (key, default, help) of the
    serve command's options, in order; each key is preceded by its help as a comment; keys
    without a default are commented out (with an example value)."""
    lines = ["# cea serve --config FILE: the options of cea serve, named with underscores.",
             "# Options given on the command line override the file; a key left out takes",
             "# its default (shown here); paths are relative to the current directory.", ""]
    for key, default, help_text in options:
        if key not in KEYS:
            continue
        for line in textwrap.wrap(" ".join(help_text.split()), 86):
            lines.append(f"# {line}")
        if default is None:
            lines.append(f"# {key} = {_toml_value(EXAMPLES.get(key, ''))}")
        else:
            lines.append(f"{key} = {_toml_value(default)}")
        lines.append("")
    return "\n".join(lines)
