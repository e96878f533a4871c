"""An interrupted create or import leaves nothing that looks finished, and a re-run completes."""

from __future__ import annotations

import pytest

from gapsync.bundle import archive as bundle_mod
from gapsync.bundle.keys import load_signing_key
from gapsync.bundler.cache import BlobCache
from gapsync.bundler.create import create_bundle
from gapsync.bundler.trust_repo import ChannelRepo
from gapsync.errors import PublishError
from gapsync.mirror.importer import import_bundle
from gapsync.mirror.targets import pep503
from tests.support.channels import new_channel, write_spec
from tests.support.cli import cli
from tests.support.trees import snapshot


def test_interrupted_create_leaves_no_bundle_and_channel_unchanged(world, tmp_path, monkeypatch):
    ch = new_channel(tmp_path, "prod")
    spec = write_spec(tmp_path / "g.yaml", world.index.url, ["alpha", "gamma"])
    key = load_signing_key(ch.keys[0])
    cache = BlobCache(tmp_path / "cache")
    real_add = bundle_mod.BundleWriter.add_blob
    calls = {"n": 0}

    def dying_add(self, blob, src):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C in the middle of writing
        return real_add(self, blob, src)

    monkeypatch.setattr(bundle_mod.BundleWriter, "add_blob", dying_add)
    with pytest.raises(KeyboardInterrupt):
        create_bundle(spec, None, ch.state, [key], tmp_path / "out", cache)
    assert not (tmp_path / "out").exists()  # neither a bundle nor a .partial, nor the directory made for them
    assert ChannelRepo(ch.state, "prod").next_version() == 1
    monkeypatch.setattr(bundle_mod.BundleWriter, "add_blob", real_add)
    r = create_bundle(spec, None, ch.state, [key], tmp_path / "out", cache)
    assert r.version == 1 and r.downloaded == 0  # the re-run reuses the verified downloads
    m = tmp_path / "m"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    assert cli("import", r.bundle, "--mirror", m).code == 0


def test_failed_publish_keeps_trust_state_and_rerun_matches_clean_import(world, tmp_path, monkeypatch):
    clean = tmp_path / "clean"
    broken = tmp_path / "broken"
    for m in (clean, broken):
        assert cli("trust", "pin", world.root, "--mirror", m).code == 0
    import_bundle(world.b2, clean)

    real = pep503.Pep503Index._render_root

    def crash(self):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pep503.Pep503Index, "_render_root", crash)
    with pytest.raises(PublishError, match="No space left on device.*run the import again"):
        import_bundle(world.b2, broken)
    monkeypatch.setattr(pep503.Pep503Index, "_render_root", real)
    assert (broken / ".gapsync/trust/prod/state.json").exists() is False  # the channel did not advance
    r = import_bundle(world.b2, broken)
    assert not r.nothing_new and r.version == 2

    def public(m):
        return {k: v for k, v in snapshot(m).items() if not k.startswith(".gapsync/trust/prod/md-")
                and not k.startswith(".gapsync/trust/prod/current") and "state.json" not in k}

    assert public(broken) == public(clean)
    assert cli("import", world.b2, "--mirror", broken).code == 5
