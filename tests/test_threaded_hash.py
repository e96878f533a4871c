"""ThreadedHash: the hash of a stream handed to a worker thread chunk by chunk must equal the
hash computed inline, and a failure in the worker must reach the caller."""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from gapsync.errors import DigestMismatchError
from gapsync.hashing import HAND_OFF_MIN, ThreadedHash, copy_verified


def _chunks() -> list[bytes]:
    """Large (handed off) and small (inline) chunks interleaved, so that an inline update right
    after a handed-off one would show up as a wrong digest if it did not wait."""
    sizes = [HAND_OFF_MIN * 4, 10, HAND_OFF_MIN, 1, HAND_OFF_MIN - 1, HAND_OFF_MIN * 2, 3, 0, HAND_OFF_MIN * 8]
    return [os.urandom(n) for n in sizes * 5]


@pytest.mark.parametrize("algo", ["sha256", "blake2b"])
def test_digest_equals_inline_hashing(algo):
    chunks = _chunks()
    h = ThreadedHash(hashlib.new(algo))
    for c in chunks:
        h.update(c)
    assert h.hexdigest() == hashlib.new(algo, b"".join(chunks)).hexdigest()
    assert h.digest() == hashlib.new(algo, b"".join(chunks)).digest()


class _Failing:
    """A hash object whose third update fails, as a worker-side error would."""

    def __init__(self) -> None:
        self.calls = 0

    def update(self, data: bytes) -> None:
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("worker failed")

    def hexdigest(self) -> str:
        return "x"


def test_a_worker_error_reaches_the_caller():
    h = ThreadedHash(_Failing())
    big = b"\0" * HAND_OFF_MIN
    h.update(big)
    h.update(big)
    h.update(big)  # fails in the worker
    with pytest.raises(RuntimeError, match="worker failed"):
        h.hexdigest()


def test_abandon_swallows_the_worker_error():
    h = ThreadedHash(_Failing())
    for _ in range(3):
        h.update(b"\0" * HAND_OFF_MIN)
    h.abandon()  # no exception: the caller's own error is the one to report
    assert h.hexdigest() == "x"  # nothing in flight any more


def test_copy_verified_reports_its_own_error_and_leaves_nothing_in_flight():
    data = os.urandom(HAND_OFF_MIN * 3)
    hasher = hashlib.sha256()
    chunks = [data[i:i + HAND_OFF_MIN] for i in range(0, len(data), HAND_OFF_MIN)]
    with pytest.raises(DigestMismatchError, match="more than the announced"):
        copy_verified(chunks, io.BytesIO(), what="blob", sha256=None, size=HAND_OFF_MIN * 2, hasher=hasher)
    # the caller's hasher got exactly the chunks before the refusal, all of them finished
    assert hasher.hexdigest() == hashlib.sha256(data[:HAND_OFF_MIN * 2]).hexdigest()


@pytest.mark.parametrize("overlap", [True, False])
def test_copy_verified_copies_and_checks(overlap):
    data = os.urandom(HAND_OFF_MIN * 5 + 7)
    out = io.BytesIO()
    chunks = [data[i:i + 100_000] for i in range(0, len(data), 100_000)]
    digest, n = copy_verified(chunks, out, what="blob", sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                              overlap=overlap)
    assert out.getvalue() == data and n == len(data) and digest == hashlib.sha256(data).hexdigest()
    bad = bytearray(data)
    bad[-1] ^= 1
    with pytest.raises(DigestMismatchError, match="does not match"):
        copy_verified([bytes(bad)], io.BytesIO(), what="blob", sha256=digest, size=len(data), overlap=overlap)
