"""The one error tree. Every class maps to an exit code in ``gapsync.cli.exit_codes``.

Messages are written for the operator: they name the thing (a file, a member, a package) and the
reason, on one line, so that a log line or a terminal shows what to fix without a traceback.
"""

from __future__ import annotations


class GapsyncError(Exception):
    """Something went wrong; the message names the thing and the reason."""

    def __str__(self) -> str:
        # messages name URLs: never with their user info or secret query values (gapsync/redact.py)
        from gapsync.redact import redact_text

        return redact_text(super().__str__())


class InputError(GapsyncError):
    """A malformed spec, lock, key, trust or policy file, or a bad argument."""


class FetchError(GapsyncError):
    """Upstream, network or local disk trouble; running again finishes the job."""


class UpstreamError(GapsyncError):
    """An upstream (index, registry, Hub) answered what gapsync refuses: a name the air side would
    refuse, a document over its size cap or of the wrong shape, a realm it must not trust."""


class VerificationError(GapsyncError):
    """A bundle, signature or blob failed a check: nothing from it is trusted."""


class BundleFormatError(VerificationError):
    """The bundle file is not a well-formed v1 bundle (members, order, sizes, types)."""


class TrustError(VerificationError):
    """TUF refused the metadata: signature, threshold, expiry, rollback, channel."""


class ChannelConflictError(VerificationError):
    """A channel's release would replace a name (file, tag, model reference) another channel owns."""


class DigestMismatchError(VerificationError):
    """Bytes do not match the digest or length that was signed or announced."""


class PolicyBlockedError(GapsyncError):
    """The policy blocked one or more artifacts; ``decisions`` says which and why."""

    def __init__(self, message: str, decisions: list | None = None):
        super().__init__(message)
        self.decisions = decisions or []


class PublishError(GapsyncError):
    """A target refused to take an artifact; nothing was left half-published."""


class LockedError(GapsyncError):
    """Another gapsync process holds the lock on this mirror or state directory."""
