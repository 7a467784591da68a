"""How long work tells what it is doing: every step that takes a while reports one line."""

from __future__ import annotations

from collections.abc import Callable

Report = Callable[[str], None]
