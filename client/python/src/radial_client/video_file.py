"""VideoFile: the MP4 of one job being received, in a temporary file renamed onto its path at the end."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from types import TracebackType

import grpc

from .errors import RadialError


class VideoFile:
    """Chunks written at their offsets into `.NAME.XXXXXXXX.part` next to `path`; commit() renames it
    onto `path` (atomically: a reader sees the old file or the whole video), discard() removes it.
    As a context manager, leaving the block without commit() discards the file, so a failed or
    interrupted job leaves nothing behind. Owned by one thread."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.part_path = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.part")
        # Created before anything is sent, so that an unwritable path costs no job. os.open rather
        # than tempfile: the final file gets the usual permissions (0666 less the umask). Writes are
        # unbuffered: a chunk is in the file once write() returns.
        self._fd = os.open(self.part_path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        self._open = True
        self.size = 0  # end of the bytes held, i.e. the offset the next chunk should have

    def write(self, job_id: str, offset: int, data: bytes) -> None:
        """Writes one chunk. A chunk past the end (bytes missing before it) raises DATA_LOSS."""
        if offset > self.size:
            raise RadialError(grpc.StatusCode.DATA_LOSS,
                              f"chunk at offset {offset} but only {self.size} bytes received before it", job_id=job_id)
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, offset)
            view, offset = view[written:], offset + written
        self.size = max(self.size, offset)

    def truncate(self) -> None:
        """Drops every byte (the job restarted: its chunks begin again at offset 0)."""
        os.ftruncate(self._fd, 0)
        self.size = 0

    def commit(self) -> None:
        """Flushes the bytes to disk and renames the file onto `path`, replacing what was there."""
        os.fsync(self._fd)
        self._close()
        try:
            os.replace(self.part_path, self.path)
        except BaseException:
            self.part_path.unlink(missing_ok=True)
            raise

    def discard(self) -> None:
        """Removes the temporary file unless commit() renamed it (a no-op then)."""
        if self._open:
            self._close()
            self.part_path.unlink(missing_ok=True)

    def _close(self) -> None:
        self._open = False
        os.close(self._fd)

    def __enter__(self) -> VideoFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.discard()
