"""Plain declarations of command-line sub-commands that a library package offers (no typer here).

A recipe package declares its extra commands (`zss import NAME`, `zss prompts explain`) as `Command`
objects: a name, a help line, the parameters and a plain function returning the text to print.
`zss.cli` turns each declaration into a typer command with exactly these names, defaults and help,
so the recipes stay free of the CLI framework and `zss --help` lists them without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Param:
    """One parameter of a command: a required positional argument when `flags` is empty, otherwise an
    option spelled by `flags` (e.g. `("--out",)`, `("-k",)`) with `default`; `min` bounds an int."""

    name: str                     # the keyword the command's function takes
    type: Any                     # Path, str, int, Optional[...]: what the value is parsed into
    help: str | None = None
    flags: tuple[str, ...] = ()
    default: Any = None
    min: int | None = None


@dataclass(frozen=True)
class Command:
    """`zss GROUP NAME ...`: parse `params`, call `run(**values)`, print the text it returns."""

    name: str
    help: str
    run: Callable[..., str]
    params: tuple[Param, ...] = ()


@dataclass(frozen=True)
class CommandGroup:
    """`zss NAME`: a group of sub-commands with its own help line."""

    name: str
    help: str
    commands: tuple[Command, ...]
