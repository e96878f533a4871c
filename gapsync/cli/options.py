"""Options and small parsers shared by several commands (each defined once, as pip does)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from gapsync.bundler.create import CreateResult, DeltaOptions

json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
mirror_option = click.option("--mirror", type=click.Path(file_okay=False, path_type=Path), required=True,
                             help="The air-gapped side's mirror directory.")
state_option = click.option("--state", type=click.Path(file_okay=False, path_type=Path), required=True,
                            help="The connected side's state directory (TUF repositories of the channels).")
key_option = click.option("--key", "key_files", multiple=True, required=True,
                          type=click.Path(exists=True, dir_okay=False, path_type=Path),
                          help="A private signing key (PKCS#8 PEM); repeat for several.")
passphrase_option = click.option("--passphrase-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                                 help="File holding the keys' passphrase (or set GAPSYNC_KEY_PASSPHRASE).")
cache_option = click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
                            help="Content-addressed download cache [default: $GAPSYNC_CACHE or ~/.cache/gapsync].")
jobs_option = click.option("--jobs", "-j", type=click.IntRange(1, 64), default=8, show_default=True,
                           help="Parallel downloads.")


policy_option = click.option("--policy", metavar="POLICY",
                             help="Policy file, or a shipped policy name (default, strict) [default: default].")
allow_partial_option = click.option("--allow-partial", is_flag=True,
                                    help="Go on without the artifacts the policy blocks (they are reported) instead of exit 4.")
report_option = click.option("--report", type=click.Path(dir_okay=False, path_type=Path),
                             help="Write a self-contained HTML report (what crossed, findings, decisions, waivers).")


volume_options = [
    click.option("--max-volume-size", metavar="SIZE",
                 help="Split into volumes of at most SIZE (any size down to 1MiB: 4GiB, 700MB, or fat32, dvd, bd25); "
                      "a blob larger than a volume spans volumes in parts (bundle format 2)."),
    click.option("--media", type=click.Choice(["fat32", "dvd", "bd25", "exfat"]),
                 help="Volumes that fit this medium (fat32: 4 GiB - 1; exfat: no per-file limit, one file)."),
    click.option("--parity", type=click.IntRange(0, 32), default=0, show_default=True,
                 help="Parity volumes: any this many lost or damaged volumes can be rebuilt (gapsync bundle repair)."),
]


def volume_size(max_volume_size: str | None, media: str | None) -> int | None:
    from gapsync.bundle.volumes import parse_volume_size

    value = max_volume_size or media
    if value == "exfat":  # no per-file limit beyond the medium: one bundle file
        return None
    return parse_volume_size(value) if value else None


def add_options(options):
    def wrap(f):
        for o in reversed(options):
            f = o(f)
        return f

    return wrap


class DurationType(click.ParamType):
    name = "duration"

    def convert(self, value, param, ctx):
        if isinstance(value, timedelta):
            return value
        m = re.fullmatch(r"\s*(\d+)\s*([hdw])\s*", str(value))
        if not m:
            self.fail(f"{value!r}: expected a duration like 12h, 30d or 2w", param, ctx)
        n, unit = int(m.group(1)), m.group(2)
        if n <= 0:
            self.fail(f"{value!r}: must be positive", param, ctx)
        return {"h": timedelta(hours=n), "d": timedelta(days=n), "w": timedelta(weeks=n)}[unit]


DURATION = DurationType()


def load_keys(paths: tuple[Path, ...], passphrase_file: Path | None) -> list:
    from gapsync.bundle.keys import load_signing_key

    return [load_signing_key(p, passphrase_file) for p in paths]


# -- what `bundle create` and `sync` share: one list of options, one call ----------------------
_BUNDLE_OPTIONS = [
    click.option("-f", "--file", "spec_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                 default="gapsync.yaml", show_default=True),
    state_option,
    key_option,
    click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True),
    click.option("--expires", type=DURATION, default="30d", show_default=True,
                 help="How long the air-gapped side accepts this bundle."),
    cache_option,
    jobs_option,
    passphrase_option,
    policy_option,
    click.option("--advisories", type=click.Path(path_type=Path),
                 help="Advisory store (gapsync advisories import) [default: $GAPSYNC_ADVISORIES or ~/.cache/gapsync/advisories]."),
    allow_partial_option,
    report_option,
    click.option("--unapproved", is_flag=True,
                 help="Sign targets with fewer keys than its threshold; the other key holders approve later (bundle approve)."),
    *volume_options,
    click.option("--no-cache", is_flag=True,
                 help="Write the model and dataset files that download into the bundle only, never into the cache "
                      "(one disk write per byte, no cache copy; the next bundle downloads them again)."),
]


@dataclass(frozen=True)
class BundleArgs:
    """The options of ``bundle create`` and ``sync`` that make a bundle, gathered by
    ``bundle_options`` (one field per option of ``_BUNDLE_OPTIONS``, by parameter name)."""

    spec_path: Path
    state: Path
    key_files: tuple[Path, ...]
    out_dir: Path
    expires: timedelta
    cache: Path | None
    jobs: int
    passphrase_file: Path | None
    policy: str | None
    advisories: Path | None
    allow_partial: bool
    report: Path | None
    unapproved: bool
    max_volume_size: str | None
    media: str | None
    parity: int
    no_cache: bool

    def create(self, lock_path: Path | None, delta: DeltaOptions | None = None) -> CreateResult:
        """``create_bundle`` with these options (``--unapproved``: inside ``unapproved_signing``)."""
        import contextlib

        from gapsync.bundler.cache import BlobCache, default_cache_dir
        from gapsync.bundler.create import ScanOptions, create_bundle
        from gapsync.bundler.trust_repo import unapproved_signing

        keys = load_keys(self.key_files, self.passphrase_file)
        scan = ScanOptions(self.policy, self.advisories, self.allow_partial, self.report,
                           volume_size(self.max_volume_size, self.media), self.parity,
                           no_cache=self.no_cache)
        with unapproved_signing() if self.unapproved else contextlib.nullcontext():
            return create_bundle(self.spec_path, lock_path, self.state, keys, self.out_dir,
                                 BlobCache(self.cache or default_cache_dir()), jobs=self.jobs, expires=self.expires,
                                 scan=scan, delta=delta)


def bundle_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options every bundle-making command has; the command gets them as its first argument,
    one ``BundleArgs``, and its own options by name."""
    names = [x.name for x in fields(BundleArgs)]

    @functools.wraps(f)
    def command(**kwargs: Any) -> Any:
        return f(BundleArgs(**{n: kwargs.pop(n) for n in names}), **kwargs)

    return add_options(_BUNDLE_OPTIONS)(command)
