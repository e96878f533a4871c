"""Torch storage records and chat template files, each read the way its loader reads it.

Storage records (``<prefix>data/<n>`` beside ``<prefix>data.pkl``) hold tensor bytes that torch
copies and never parses: bytes that only start like a pickle are not a finding there, while a
whole pickle hidden in one still is. ``.jinja`` files are chat templates that transformers loads
by name. The checkpoints are written as zips by the test (a pickle is dumped, never loaded)."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import pytest

from tests.support.cli import cli


class _Shell:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _checkpoint(path: Path, records: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("ckpt/data.pkl", pickle.dumps({"w": "storage 0"}, protocol=2))
        z.writestr("ckpt/version", b"3\n")
        for name, data in records.items():
            z.writestr(f"ckpt/data/{name}", data)
    return path


# tensor bytes that begin like a pickle header and then stop parsing, as random weights do
TENSOR_STARTS = [b"\x80\x02\xfe", b"\x80\x05\x95\xff\xff\xff\xff\xff\xff\xff\x7f", b"\x80\x04(", b"c\x00\x01",
                 b"\x1f\x8b\x08\x00", b"PK\x03\x04\x00\x00", b"(\x80"]


@pytest.mark.parametrize("start", TENSOR_STARTS, ids=lambda b: b[:4].hex())
def test_tensor_bytes_that_start_like_a_pickle_are_not_a_finding(tmp_path, start):
    ckpt = _checkpoint(tmp_path / "m.pt", {"0": start + bytes(range(256)) * 4, "1": bytes(1024)})
    r = cli("scan", ckpt, "--json")
    assert r.code == 0, r.out + r.err


def test_a_whole_pickle_hidden_in_a_storage_record_is_still_caught(tmp_path):
    ckpt = _checkpoint(tmp_path / "m.pt", {"0": pickle.dumps(_Shell(), protocol=2) + bytes(64)})
    r = cli("scan", ckpt)
    assert r.code != 0
    assert "system" in r.out and "ckpt/data/0" in r.out


def test_a_dangerous_global_before_the_point_a_record_stops_parsing_is_kept(tmp_path):
    whole = pickle.dumps(_Shell(), protocol=2)
    ckpt = _checkpoint(tmp_path / "m.pt", {"0": whole[:-1] + b"\xfe"})  # STOP replaced by junk
    r = cli("scan", ckpt)
    assert r.code != 0 and "system" in r.out


def test_the_same_bytes_outside_a_storage_record_are_still_high(tmp_path):
    """Only torch's raw records are exempt: a file, or an entry with another name, that starts like
    a pickle and cannot be read the way the unpickler reads it stays high."""
    f = tmp_path / "weights.bin"
    f.write_bytes(b"\x80\x02\xfe" + bytes(64))
    assert cli("scan", f).code != 0
    with zipfile.ZipFile(tmp_path / "m.pt", "w") as z:
        z.writestr("ckpt/data.pkl", pickle.dumps({}, protocol=2))
        z.writestr("ckpt/extra/0", b"\x80\x02\xfe" + bytes(64))
    assert cli("scan", tmp_path / "m.pt").code != 0


ISSUE_TEMPLATE = ("{% set u='%c%c'|format(95,95) %}{% set g=namespace|attr(u~'in'~'it'~u)|attr(u~'glo'~'bals'~u) %}"
                  "{{ ((g['o'~'s']|attr('po'~'pen'))('echo x')|attr('re'~'ad'))() }}")


@pytest.mark.parametrize("name", ["chat_template.jinja", "additional_chat_templates/tool_use.jinja"])
def test_a_chat_template_file_is_judged_by_its_name(tmp_path, name):
    """transformers saves chat templates as .jinja files and renders them: a hostile one inside a
    model directory (and inside a zip of it) is high, a plain one is quiet. They start with "{%",
    which format detection alone reads as (malformed) JSON."""
    bad = tmp_path / "bad" / name
    bad.parent.mkdir(parents=True)
    bad.write_text(ISSUE_TEMPLATE)
    assert cli("scan", tmp_path / "bad").code != 0
    with zipfile.ZipFile(tmp_path / "m.zip", "w") as z:
        z.writestr(f"model/{name}", ISSUE_TEMPLATE)
    assert cli("scan", tmp_path / "m.zip").code != 0
    good = tmp_path / "good" / name
    good.parent.mkdir(parents=True)
    good.write_text("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] | trim }}{% endfor %}")
    assert cli("scan", tmp_path / "good").code == 0
