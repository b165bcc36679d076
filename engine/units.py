"""The market's units as text: money in fen shown as CNY with two decimals, exactly.

Everything inside the exchange is an integer (fen, tonnes, ticks of 0.01 CNY/t); text appears
only at the edges (CSV files, reports, messages). These two functions are the one place that
turns fen into text and text into fen, without floats.

>>> format_fen(601000), format_fen(-5), format_fen(0)
('6010.00', '-0.05', '0.00')
>>> parse_fen("60.1"), parse_fen("60.10"), parse_fen("0"), parse_fen("-1.50", negative=True)
(6010, 6010, 0, -150)
>>> parse_fen("60.105"), parse_fen("1e3"), parse_fen("-1"), parse_fen("")
(None, None, None, None)
"""

from __future__ import annotations

import re

_CNY_RE = re.compile(r"^(-?)([0-9]+)(?:\.([0-9]{1,2}))?$", re.ASCII)


def format_fen(fen: int) -> str:
    """``fen`` as CNY with two decimals (``-12.34``)."""
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def parse_fen(text: str, negative: bool = False) -> int | None:
    """Fen for CNY text with at most two decimals (``60``, ``60.1``, ``60.10``), else None;
    a leading ``-`` only if ``negative``. Surrounding spaces are the caller's to strip."""
    m = _CNY_RE.match(text)
    if m is None or (m.group(1) and not negative):
        return None
    fen = int(m.group(2)) * 100 + int((m.group(3) or "").ljust(2, "0"))
    return -fen if m.group(1) else fen
