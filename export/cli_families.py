"""Command-line options contributed by the model families and engine backends.

A command built with ``GroupedCommand`` takes its own options plus every group's (each option once,
however many groups list it), lists them in its help under each group's title, and ``options_for``
hands a family the values of its own options while refusing, with one line, any option the user set
that belongs only to other groups: nothing a family does not use is silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import click

from sr_runtime.errors import SRError

from .builders.backends import BACKENDS
from .families import FAMILIES


@dataclass(frozen=True)
class OptionGroup:
    owner: str  # a family or backend name
    title: str  # "InvSR", "TensorRT": names the group in messages
    heading: str  # its section in --help
    options: tuple[click.Option, ...]


def family_groups(kind: str, heading: str = "{title} options (--model {models})", title: str = "{title}"
                  ) -> list[OptionGroup]:
    """Each family's options of one ``kind`` (an ``ExportFamily`` attribute such as "build_options")."""
    return [
        OptionGroup(f.name, title.format(title=f.title), heading.format(title=f.title, models="|".join(f.models)),
                    getattr(f, kind))
        for f in FAMILIES.values()
        if getattr(f, kind)
    ]


def backend_groups() -> list[OptionGroup]:
    return [OptionGroup(b.name, b.title, f"{b.title} options (--backend {b.name})", b.build_options)
            for b in BACKENDS.values() if b.build_options]


class GroupedCommand(click.Command):
    def __init__(self, *args: Any, option_groups: Iterable[OptionGroup] = (), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.option_groups = tuple(option_groups)
        known = {p.name: p for p in self.params}
        for option in (o for group in self.option_groups for o in group.options):
            if known.setdefault(option.name, option) is not option:
                raise TypeError(f"{self.name}: two different options are named {option.opts[0]}")
            if option not in self.params:
                self.params.append(option)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        grouped = {id(o) for group in self.option_groups for o in group.options}
        common = [p.get_help_record(ctx) for p in self.get_params(ctx)
                  if isinstance(p, click.Option) and id(p) not in grouped]
        with formatter.section("Options"):
            formatter.write_dl([record for record in common if record])
        for group in self.option_groups:
            with formatter.section(group.heading):
                formatter.write_dl([o.get_help_record(ctx) for o in group.options])


def _given(ctx: click.Context, option: click.Option) -> bool:
    return ctx.get_parameter_source(option.name) not in (None, click.core.ParameterSource.DEFAULT)


def flags(options: Iterable[click.Option]) -> str:
    return ", ".join(o.opts[0] for o in options) or "none"


def options_for(ctx: click.Context, allowed: Iterable[OptionGroup], groups: Iterable[OptionGroup],
                why: str) -> dict[str, Any]:
    """The values of the options in ``allowed``; any option of ``groups`` outside them that the
    user set is refused: "<flags>: <their owners'> options; <why>"."""
    allowed = list(allowed)
    names = {o.name for group in allowed for o in group.options}
    misplaced: dict[str, click.Option] = {}
    owners: list[str] = []
    for group in groups:
        for option in group.options:
            if option.name not in names and _given(ctx, option):
                misplaced.setdefault(option.name, option)
                owners += [group.title] if group.title not in owners else []
    if misplaced:
        raise SRError(f"{flags(misplaced.values())}: {' / '.join(owners)} options; {why}")
    return {name: ctx.params[name] for name in names}
