"""Rendering results: plain text for people, ``--json`` for programs. No logic lives here."""

from __future__ import annotations

import json

import click


def emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def human_size(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def warn_version_differences(pins_or_diffs: dict, *, are_diffs: bool = False) -> None:
    """Say (on stderr) which projects the targets got in different versions, and the option that
    aligns them: a site that expects one version everywhere must not learn it from an incident."""
    from gapsync.bundler.per_target import describe, differences

    diffs = pins_or_diffs if are_diffs else differences(pins_or_diffs)
    if not diffs:
        return
    click.echo(f"warning: the targets got different versions of {len(diffs)} project(s) "
               "(python.same_versions: true aligns them where one version fits all):", err=True)
    for line in describe(diffs):
        click.echo(f"  {line}", err=True)
