"""Helpers every `edgec` command module shares: one-line errors, ``--json``, output tables."""

from __future__ import annotations

import functools
import sys
import traceback
from typing import Any, Callable

import click

from edgec._quiet import DEBUG as _DEBUG
from edgec.errors import EdgecError


class EdgecClickException(click.ClickException):
    """An `EdgecError` shown as one ``error: ...`` line."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def handle_errors(fn: Callable) -> Callable:
    """Turn `EdgecError` into a one-line `click.ClickException` (traceback with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EdgecError as exc:
            if _DEBUG["on"]:
                traceback.print_exc()
            raise EdgecClickException(str(exc), exc.exit_code) from exc

    return wrapper


def json_option(fn):
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout and nothing else.")(fn)


def emit(obj: Any, as_json: bool, human: Callable[[Any], None]) -> None:
    if as_json:
        from edgec.compiler.bundle import dumps

        click.echo(dumps(obj), nl=False)
    else:
        human(obj)


def console():
    from rich.console import Console

    # Off a terminal (CI logs, pipes) rich would wrap at 80 columns; tables read better wider.
    # markup=False: values such as "pip install 'edgec[openvino]'" must print verbatim.
    return Console(width=None if sys.stdout.isatty() else 160, markup=False, highlight=False)


def table(title: str, columns: list[str], rows: list[list[Any]]):
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    return t
