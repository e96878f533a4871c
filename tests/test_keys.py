import stat
import subprocess

from gapsync.bundle import keys, minisign
from gapsync.errors import InputError, VerificationError


def test_generate_writes_private_0600_and_minisign_pub(tmp_path, gs):
    r = gs("keys", "generate", "--out", str(tmp_path / "k"), "--name", "dmz", check=True)
    assert "tuf key id" in r.stdout
    key = tmp_path / "k/dmz.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    pub = keys.load_public_key(tmp_path / "k/dmz.pub")
    assert keys.load_signing_key(key).public == pub
    # refusing to overwrite is exit 2 with the file named
    r = gs("keys", "generate", "--out", str(tmp_path / "k"), "--name", "dmz")
    assert r.returncode == 2 and "dmz.key" in r.stderr and "already exists" in r.stderr


def test_encrypted_key_needs_passphrase(tmp_path, monkeypatch):
    pw = tmp_path / "pw"
    pw.write_text("correct horse\n")
    kp, _ = keys.generate(tmp_path, "enc", passphrase_file=pw)
    assert "ENCRYPTED" in kp.read_text()
    monkeypatch.delenv(keys.PASSPHRASE_ENV, raising=False)
    try:
        keys.load_signing_key(kp)
        raise AssertionError("an encrypted key loaded without a passphrase")
    except InputError as e:
        assert "encrypted" in str(e)
    monkeypatch.setenv(keys.PASSPHRASE_ENV, "wrong")
    try:
        keys.load_signing_key(kp)
        raise AssertionError("wrong passphrase accepted")
    except InputError as e:
        assert "passphrase" in str(e)
    monkeypatch.setenv(keys.PASSPHRASE_ENV, "correct horse")
    assert keys.load_signing_key(kp).public.raw


def test_stock_minisign_verifies_our_signature_and_rejects_tampering(tmp_path, minisign_bin):
    kp, pub = keys.generate(tmp_path, "dmz")
    k = keys.load_signing_key(kp)
    data = tmp_path / "file.bin"
    data.write_bytes(b"x" * 100_000)
    sig = tmp_path / "file.bin.minisig"
    minisign.write_signature(sig, k, minisign.blake2b_file(data), "file:file.bin\tchannel:prod")
    r = subprocess.run([minisign_bin, "-Vm", str(data), "-p", str(pub)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "channel:prod" in r.stdout
    assert minisign.verify(data, sig, keys.load_public_key(pub)) == "file:file.bin\tchannel:prod"
    data.write_bytes(b"x" * 99_999 + b"y")
    r = subprocess.run([minisign_bin, "-Vm", str(data), "-p", str(pub)], capture_output=True, text=True)
    assert r.returncode != 0
    try:
        minisign.verify(data, sig, keys.load_public_key(pub))
        raise AssertionError("tampered file verified")
    except VerificationError:
        pass
    # another key's public key is refused by both
    _, other = keys.generate(tmp_path, "other")
    data.write_bytes(b"x" * 100_000)
    r = subprocess.run([minisign_bin, "-Vm", str(data), "-p", str(other)], capture_output=True, text=True)
    assert r.returncode != 0
