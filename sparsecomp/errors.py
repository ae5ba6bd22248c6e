"""Exception hierarchy of sparsecomp.

Every failure the library reports on purpose is a :class:`SparseCompError`. Each error carries
the file and the member (HDF5 path) it concerns, and a stable ``rule`` identifier, so callers and
tests can react to *what* went wrong without matching message text.
"""

from __future__ import annotations

__all__ = [
    "SparseCompError",
    "BadArgumentError",
    "CorruptFileError",
    "UnsupportedFormatError",
    "InvalidTensorError",
    "ResourceLimitError",
    "UnsafeModelError",
    "WeightMismatchError",
    "WriteError",
    "DataError",
    "ClusterError",
]


class SparseCompError(Exception):
    """Base class of every error sparsecomp raises on purpose.

    Attributes:
        rule: stable identifier of the check that failed (e.g. ``"csr.indptr.order"``).
        file: the file concerned, or ``None``.
        member: the HDF5 path (or archive member) concerned, or ``None``.
    """

    default_rule = "error"

    def __init__(self, message: str, *, rule: str | None = None, file=None, member=None):
        self.message = message
        self.rule = rule or self.default_rule
        self.file = None if file is None else str(file)
        self.member = member
        super().__init__(message)

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(self.file)
        if self.member:
            where.append(self.member)
        prefix = ": ".join(where)
        return f"{prefix}: {self.message} [{self.rule}]" if prefix else f"{self.message} [{self.rule}]"


class BadArgumentError(SparseCompError, ValueError):
    """An argument given by the caller is out of its allowed range or of the wrong kind."""

    default_rule = "argument"


class CorruptFileError(SparseCompError):
    """The file is not what it claims to be: not HDF5, truncated, or structurally wrong."""

    default_rule = "corrupt"


class UnsupportedFormatError(SparseCompError):
    """The file is well formed but uses a version or feature this library does not read."""

    default_rule = "unsupported"


class InvalidTensorError(CorruptFileError):
    """One stored tensor violates an invariant (CSR structure, shape, dtype, checksum)."""

    default_rule = "tensor"


class ResourceLimitError(SparseCompError):
    """The file declares more data (bytes, members, rank...) than the configured limits allow."""

    default_rule = "limit"


class UnsafeModelError(SparseCompError):
    """Rebuilding the model would execute code from the file (Lambda layers, unknown objects)."""

    default_rule = "unsafe"


class WeightMismatchError(SparseCompError):
    """Stored weights do not fit the model they are loaded into."""

    default_rule = "weights.mismatch"


class WriteError(SparseCompError):
    """Writing the output failed; any previous file at the destination is left untouched."""

    default_rule = "write"


class DataError(SparseCompError):
    """A dataset could not be found or does not match its expected content."""

    default_rule = "data"


class ClusterError(SparseCompError):
    """A worker of a multi-worker run stopped answering (killed, crashed, unreachable, or past the
    collective timeout): the run cannot go on; nothing was written to its outputs."""

    default_rule = "cluster"
