"""``gapsync advisories``: the local OSV advisory database the vulnerability scanner matches with."""

from __future__ import annotations

from pathlib import Path

import click

from gapsync.cli.options import json_option

store_option = click.option(
    "--store", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Advisory store directory [default: $GAPSYNC_ADVISORIES or ~/.cache/gapsync/advisories].")


def _summary(store: Path, info) -> str:
    return (f"{store}: {info.advisories} advisories ({info.withdrawn} withdrawn) for {info.packages} packages, "
            f"newest modified {info.modified}, sha256 {info.sha256[:16]}…")


@click.group()
def advisories() -> None:
    """Import, update and show the OSV advisory database (PyPI) used for vulnerability scans."""


@advisories.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@store_option
@click.option("--source", "source_name", metavar="TEXT",
              help="Where the data comes from and under which licence, recorded with it and shown in reports and "
                   "the SBOM (e.g. the attribution CC BY 4.0 asks for) [default: FILE's path].")
def import_(file: Path, store: Path | None, source_name: str | None) -> None:
    """Load FILE, an OSV export (a zip of JSON files such as osv.dev's PyPI/all.zip, or JSON
    lines, gzipped or not), into the store, replacing what was there."""
    from gapsync.advisories import default_store, import_db

    store = store or default_store()
    info = import_db(file, store, source_name=source_name)
    click.echo(_summary(store, info), err=True)


@advisories.command("update")
@store_option
@click.option("--url", default=None, help="Where to download the OSV PyPI export [default: osv.dev's PyPI/all.zip].")
def update(store: Path | None, url: str | None) -> None:
    """Download the current OSV PyPI export (where this side has internet) into the store."""
    from gapsync.advisories import OSV_PYPI_URL, default_store
    from gapsync.advisories import update as update_db

    store = store or default_store()
    info = update_db(store, url=url or OSV_PYPI_URL)
    click.echo(_summary(store, info), err=True)


@advisories.command("info")
@store_option
@json_option
def info(store: Path | None, as_json: bool) -> None:
    """Show where the stored database came from, how current it is and its counts (the file is
    loaded and checked against the sha256 recorded at import)."""
    from gapsync.advisories import AdvisoryDB, default_store
    from gapsync.cli.output import emit_json

    store = store or default_store()
    data = AdvisoryDB.load(store).info()
    data["store"] = str(store)
    if as_json:
        emit_json(data)
        return
    for key in ("store", "file", "source", "imported_at", "modified", "advisories", "withdrawn", "packages",
                "sha256", "size"):
        click.echo(f"{key + ':':13} {data.get(key)}")
