"""``gapsync resolve``: pin a spec to exact files with sha256 (the lock)."""

from __future__ import annotations

from pathlib import Path

import click

from gapsync.cli.options import cache_option, jobs_option
from gapsync.cli.output import warn_version_differences


@click.command()
@click.option("-f", "--file", "spec_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default="gapsync.yaml", show_default=True, help="The spec.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default="gapsync.lock",
              show_default=True, help="Where to write the lock ('-' for stdout).")
@cache_option
@jobs_option
def resolve(spec_path: Path, output: Path, cache: Path | None, jobs: int) -> None:
    """Resolve the spec for every target interpreter into a hash-pinned lock."""
    from gapsync.bundler.cache import BlobCache, default_cache_dir
    from gapsync.bundler.resolve import resolve_spec
    from gapsync.bundler.spec import load_spec

    spec = load_spec(spec_path)
    lock = resolve_spec(spec, BlobCache(cache or default_cache_dir()), jobs)
    warn_version_differences(lock.pins)
    if str(output) == "-":
        click.echo(lock.dumps(), nl=False)
        return
    lock.write(output)
    conda = (f", {len(lock.conda['packages'])} conda package file(s) for {', '.join(lock.conda['platforms'])}"
             if lock.conda else "")
    click.echo(f"{output}: {len(lock.files)} files for {len(lock.pins)} target(s), {len(lock.images)} image(s){conda}",
               err=True)
