"""Export zips and files read within limits, whatever their size on disk says.

A zip's size on disk says little about what it unpacks to: a zip bomb turns kilobytes into
gigabytes, and its headers may understate the sizes. So a zip is refused when it lists more
members than a real export, every read stops one byte past its limit whatever the header says, and
a damaged zip is refused like any malformed file, naming it.
"""

import lzma
import zipfile
import zlib
from pathlib import Path
from types import TracebackType
from typing import IO

from healthagent.cohort.importing import CohortImportError

# A ten-year Fitbit export with a file a day for each of its ~20 daily kinds holds ~75,000 members,
# an Apple export a few thousand (workout routes, ECGs). Many more is not an export.
MAX_MEMBERS = 100_000
# What zipfile and its decompressors raise on a damaged, encrypted or unsupported member.
_DAMAGED = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, NotImplementedError, RuntimeError, OSError)


class LimitedReader:
    """A binary stream that refuses (naming ``where``) to yield more than ``limit`` bytes."""

    def __init__(self, stream: IO[bytes], *, limit: int, where: str):
        self._stream = stream
        self.limit = limit
        self.where = where
        self.bytes_read = 0
        self.at_end = False  # the stream is exhausted: a parse error now means the file ends early

    def read(self, size: int = -1) -> bytes:
        left = self.limit - self.bytes_read
        try:
            data = self._stream.read(left + 1 if size < 0 else min(size, left + 1))
        except _DAMAGED as error:
            raise CohortImportError(f"{self.where}: cannot be read ({error})") from error
        self.bytes_read += len(data)
        self.at_end = not data
        if self.bytes_read > self.limit:
            raise CohortImportError(
                f"{self.where}: unpacks to more than its limit of {self.limit:,} bytes (a zip bomb whose header "
                "understates its size?); refused"
            )
        return data

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> "LimitedReader":
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def open_zip(path: Path) -> zipfile.ZipFile:
    """The zip at ``path``, refused when damaged or listing more than ``MAX_MEMBERS`` members."""
    try:
        archive = zipfile.ZipFile(path)
    except _DAMAGED as error:
        raise CohortImportError(f"{path.name}: a damaged zip ({error})") from error
    members = len(archive.infolist())
    if members > MAX_MEMBERS:
        archive.close()
        raise CohortImportError(
            f"{path.name}: {members:,} files in the zip, more than the {MAX_MEMBERS:,} of any real export; refused"
        )
    return archive


def open_member(archive: zipfile.ZipFile, name: str, *, limit: int, where: str) -> LimitedReader:
    """The member ``name`` as a stream of at most ``limit`` bytes; refused at once if its header says more."""
    info = archive.getinfo(name)
    if info.file_size > limit:
        raise CohortImportError(f"{where}: unpacks to {info.file_size:,} bytes, over the limit of {limit:,}; refused")
    try:
        stream = archive.open(info)
    except _DAMAGED as error:
        raise CohortImportError(f"{where}: cannot be unpacked ({error})") from error
    return LimitedReader(stream, limit=limit, where=where)
