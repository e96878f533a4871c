"""``gapsync bundle``: create, inspect and verify bundles."""

from __future__ import annotations

from pathlib import Path

import click

from gapsync.cli.exit_codes import ExitCode
from gapsync.cli.options import (
    BundleArgs,
    bundle_options,
    json_option,
    key_option,
    load_keys,
    mirror_option,
    passphrase_option,
)
from gapsync.cli.output import emit_json, human_size, table

bundle_arg = click.argument("bundle_path", metavar="BUNDLE", type=click.Path(exists=True, dir_okay=False, path_type=Path))


@click.group()
def bundle() -> None:
    """Create, inspect and verify bundles."""


@bundle.command("create")
@bundle_options
@click.option("--lock", "lock_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Use this lock instead of resolving afresh (reproducible).")
@json_option
def create(args: BundleArgs, lock_path: Path | None, as_json: bool) -> None:
    """Fetch, scan, sign and write OUT/<name>-<channel>-<version>.gapsync (+ .minisig). Exit 4 when the policy blocks."""
    r = args.create(lock_path)
    if as_json:
        emit_json(r.to_dict())
        return
    from gapsync.cli.output import warn_version_differences

    warn_version_differences(r.version_differences, are_diffs=True)
    click.echo(f"{r.bundle}  ({human_size(r.bundle_size)}, channel {r.channel} version {r.version}, "
               f"{len(r.targets)} targets, {human_size(r.downloaded)} downloaded)")
    click.echo(f"{r.signature}  (check with: minisign -Vm {r.bundle} -p KEY.pub)")


@bundle.command("inspect")
@bundle_arg
@json_option
def inspect_(bundle_path: Path, as_json: bool) -> None:
    """Show what BUNDLE carries (unverified: use `bundle verify` for trust)."""
    from gapsync.bundle.inspect import inspect_bundle

    info = inspect_bundle(bundle_path)
    if as_json:
        emit_json(info)
        return
    click.echo(f"{info['file']}: channel {info['channel']} version {info['version']}, {human_size(info['size'])}, "
               f"expires {info['expires']} (NOT verified)")
    appr = info["approvals"]
    signers = ", ".join(k[:16] for k in info["signatures"]) or "nobody"
    if appr:
        state = "" if appr["matches"] else f" — DOES NOT MATCH this bundle: {appr['error']}"
        signers += f"; approved by {', '.join(k[:16] for k in appr['signatures']) or 'nobody'} ({appr['file']}{state})"
    need = f" (targets threshold {info['threshold']} in root v{info['root_versions'][-1]})" if info.get("threshold") else ""
    click.echo(f"root versions {info['root_versions']}; targets signed by {signers}{need}")
    meta = info.get("bundle") or {}
    base = meta.get("base") or {}
    if meta.get("kind") == "delta":  # what the other side must have imported before this one
        click.echo(f"delta bundle: carries only what is new since version {base.get('version', '?')} "
                   f"of channel {info['channel']} (base from {base.get('source', '?')}); import that version first")
    elif meta.get("kind"):
        click.echo("full bundle (carries every blob)")
    if meta.get("python_version_differences"):
        from gapsync.bundler.per_target import describe

        click.echo("targets got different versions of: " + "; ".join(describe(meta["python_version_differences"])))
    rows = [[a["kind"], a["name"], a["version"], f["filename"], human_size(f["size"]), f["sha256"][:16], ",".join(f["targets"])]
            for a in info["artifacts"] for f in a["files"] if a["kind"] == "python"]
    if rows:
        click.echo(table(rows, ["kind", "name", "version", "file", "size", "sha256", "targets"]))
    models = [[a["name"], a["version"], a["source"], a["commit"][:12], ",".join(a.get("formats") or []) or "-",
               a.get("license") or "?", str(len(a["files"])), human_size(a["size"])]
              for a in info["artifacts"] if a["kind"] == "model"]
    if models:
        click.echo(table(models, ["model", "revision", "source", "commit", "formats", "license", "files", "size"]))
    datasets = [[a["name"], a["version"], a["commit"][:12], ",".join(a.get("formats") or []) or "-",
                 a.get("license") or "?", str(len(a["files"])), human_size(a["size"])]
                for a in info["artifacts"] if a["kind"] == "dataset"]
    if datasets:
        click.echo(table(datasets, ["dataset", "revision", "commit", "formats", "license", "files", "size"]))
    conda = [[a["name"], a["version"], f.get("subdir") or "?", f["filename"], human_size(f["size"]), f["sha256"][:16],
              a.get("license") or "?", ",".join(f.get("targets") or [])]
             for a in info["artifacts"] if a["kind"] == "conda" for f in a["files"]]
    if conda:
        click.echo(table(conda, ["conda package", "version", "subdir", "file", "size", "sha256", "license", "platforms"]))
    images = [[a["name"], a["version"], ",".join(a["platforms"]) + (f" (absent: {','.join(a['missing_platforms'])})" if a["missing_platforms"] else ""),
               human_size(a["size"]), a["digest"][:19]] for a in info["artifacts"] if a["kind"] == "oci"]
    if images:
        click.echo(table(images, ["image", "tag", "platforms", "size", "digest"]))
        d = info["image_dedupe"]
        click.echo(f"images: {human_size(d['bytes_if_separate'])} as separate copies, {human_size(d['bytes_carried'])} carried "
                   f"(shared blobs saved {human_size(d['saved'])})")
    click.echo(f"{info['targets']} targets ({human_size(info['targets_bytes'])}); {info['blobs_carried']} blobs carried "
               f"({human_size(info['blob_bytes'])})")


@bundle.command("approve")
@click.argument("bundle_paths", metavar="BUNDLE...", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@key_option
@passphrase_option
@json_option
def approve(bundle_paths: tuple[Path, ...], key_files, passphrase_file, as_json: bool) -> None:
    """Co-sign BUNDLE's targets metadata (two-person rule) into BUNDLE.approvals.json.

    The bundle file is not changed (its .minisig stays valid); carry the side file next to it.
    The key must be a key of the channel's targets role. Approving again changes nothing.
    """
    from gapsync.bundle.approvals import approve_bundle

    keys = load_keys(key_files, passphrase_file)
    results = [approve_bundle(b, k) for b in bundle_paths for k in keys]
    if as_json:
        emit_json([r.to_dict() for r in results])
        return
    for r in results:
        what = (f"approved with key {r.keyid[:16]}: wrote {r.side_file}" if r.changed else
                f"key {r.keyid[:16]} signed already (in the {'bundle' if r.already == 'bundle' else 'approvals file'}); "
                "nothing changed")
        click.echo(f"{r.bundle}: channel {r.channel} version {r.version} (signed sha256 {r.signed_sha256[:16]}…): {what}")
        click.echo(f"  targets signatures: {r.valid} of {r.threshold} needed (root v{r.root_version}); "
                   f"in the bundle: {', '.join(k[:16] for k in r.bundle_signers) or 'none'}; "
                   f"approvals: {', '.join(k[:16] for k in r.approvers) or 'none'}")


@bundle.command("verify")
@bundle_arg
@mirror_option
@json_option
def verify(bundle_path: Path, mirror: Path, as_json: bool) -> None:
    """Check BUNDLE fully against MIRROR's pinned root and state; publish nothing."""
    from gapsync.mirror.importer import import_bundle

    r = import_bundle(bundle_path, mirror, verify_only=True)
    absent = _absent_volumes(bundle_path)
    if as_json:
        emit_json({**r.to_dict(), "volumes_absent": absent})
        return
    click.echo(f"{bundle_path}: OK, channel {r.channel} version {r.version}, {r.targets} targets, "
               f"{r.blobs_read} blobs ({human_size(r.bytes_read)}) verified")
    if r.volumes_needed:  # format 2: the volumes whose parts this mirror still lacks
        click.echo(f"  still missing: volume(s) {', '.join(map(str, r.volumes_needed))} (parts of blobs that span volumes)")
    if absent:
        click.echo(f"  not next to it: {', '.join(absent)}")


def _absent_volumes(path: Path) -> list[str]:
    """The other volumes of the set (by the vNNofMM name) that are not in the same directory."""
    from gapsync.bundle.volumes import VOLUME_RE, volume_file_name

    m = VOLUME_RE.fullmatch(path.name)
    if not m:
        return []
    count = int(m.group("count"))
    if count > 9999:  # a name is not a reason to look for millions of files
        return []
    names = (volume_file_name(m.group("stem"), i, count) for i in range(1, count + 1))
    return [n for n in names if not (path.parent / n).exists()]


__all__ = ["ExitCode", "bundle"]

from gapsync.cli.commands.repair import repair as _repair  # noqa: E402

bundle.add_command(_repair)
