"""``cea`` commands for the auction (registered on the main app by cea.cli)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
