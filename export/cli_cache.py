"""``sr-export cache``: what the cache holds, and pruning what no run has used lately."""

from __future__ import annotations

import time

import click

from .cache import cache_entries, cache_root, prune
from .cli_options import FiniteFloatRange

GB = 1e9
UNUSED_DAYS = 30


def _gb(size: int) -> str:
    return f"{size / GB:.2f} GB"


def _entries(count: int) -> str:
    return f"{count} entr{'y' if count == 1 else 'ies'}"


def footprint_line() -> str:
    """For the end of a run that filled the cache: how much it holds, and how to free it."""
    size = sum(e.size for e in cache_entries())
    return (f"the cache holds {_gb(size)} ({cache_root()}); `sr-export cache prune` removes what no run used for "
            f"{UNUSED_DAYS} days")


@click.group()
def cache() -> None:
    """The cache of exported graphs, checkpoints and benchmark bundles ($SR_EXPORT_CACHE)."""


@cache.command("list")
def list_entries() -> None:
    """Each entry with its size and last use, oldest first."""
    entries = cache_entries()
    click.echo(f"{cache_root()}: {_gb(sum(e.size for e in entries))} in {_entries(len(entries))}")
    for entry in entries:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.last_used)) if entry.last_used else "left by a killed run"
        click.echo(f"  {entry.name:<60} {_gb(entry.size):>10}  {used}")


@cache.command("prune")
@click.option("--unused-days", type=FiniteFloatRange(min=0), default=UNUSED_DAYS, show_default=True,
              help="Remove the entries no run has written or reused for this many days (0: all of them).")
def prune_entries(unused_days: float) -> None:
    """Removes the entries no run has used lately, and what killed runs left; a run rebuilds what it needs."""
    removed, kept = prune(unused_days, report=click.echo)
    click.echo(f"removed {_entries(len(removed))} ({_gb(sum(e.size for e in removed))}), kept "
               f"{_entries(len(kept))} ({_gb(sum(e.size for e in kept))}) in {cache_root()}")
