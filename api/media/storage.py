"""Where media bytes live.

The API talks to the small ``MediaStorage`` protocol so that local disk can
later be swapped for an object store or a CDN without touching the routes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import re
import shutil
import uuid
from typing import BinaryIO, Protocol

# Keys are ids the server made. Allowing only this alphabet (no ".", "/", "\")
# makes path traversal impossible by construction instead of by cleaning.
_KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")

# A leading "." can never start a key, so this folder cannot clash with a shard.
_INCOMING = ".incoming"


class MediaNotFound(Exception):
    """No media is stored under the key."""


class MediaStorage(Protocol):
    def save(self, key: str, source: pathlib.Path) -> None:
        """Take over a finished temp file; ``source`` is gone afterwards."""
        ...

    def open(self, key: str) -> BinaryIO:
        """Open the stored bytes for reading; raise MediaNotFound if missing."""
        ...

    def path(self, key: str) -> pathlib.Path | None:
        """Local path of the bytes, so the API can serve them with a FileResponse.

        None when the backend has no local file (then use ``open``). May raise
        MediaNotFound when the backend can tell cheaply that the key is missing.
        """
        ...

    def delete(self, key: str) -> None:
        """Remove the bytes; deleting a missing key is not an error."""
        ...


def temp_dir(root: pathlib.Path) -> pathlib.Path:
    """Folder for uploads in progress, on the same filesystem as ``root``.

    Being on the same filesystem lets ``save`` finish with an atomic rename.
    """
    incoming = root / _INCOMING
    incoming.mkdir(parents=True, exist_ok=True)
    return incoming


class LocalDiskStorage:
    """Stores each key at ``root/<first 2 chars of key>/<key>``.

    The two-character shard keeps any single folder from growing to millions
    of entries, which many filesystems and backup tools handle badly.
    """

    def __init__(self, root: pathlib.Path) -> None:
        self._root = root

    def save(self, key: str, source: pathlib.Path) -> None:
        final = self._key_path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        # Flush the data before it gets a live name: after a crash the key
        # must point at the whole file or at nothing, never at a torn one.
        _fsync_file(source)
        try:
            source.replace(final)  # os.replace: atomic on one filesystem
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            _move_across_filesystems(source, final)
        # Make the rename itself durable.
        _fsync_dir(final.parent)

    def open(self, key: str) -> BinaryIO:
        try:
            return self._key_path(key).open("rb")
        except FileNotFoundError:
            raise MediaNotFound(key) from None

    def path(self, key: str) -> pathlib.Path | None:
        local = self._key_path(key)
        # Handing out a path to a missing file would only fail later, inside
        # the response, where it can no longer become a clean 404.
        if not local.is_file():
            raise MediaNotFound(key)
        return local

    def delete(self, key: str) -> None:
        self._key_path(key).unlink(missing_ok=True)

    def _key_path(self, key: str) -> pathlib.Path:
        if not _KEY_RE.fullmatch(key):
            raise ValueError(f"invalid media key: {key!r}")
        return self._root / key[:2] / key


def _move_across_filesystems(source: pathlib.Path, final: pathlib.Path) -> None:
    # shutil.move has to copy here, and a copy can be cut short; so copy to a
    # hidden name beside the target and only then rename it into place.
    partial = final.with_name(f".{final.name}.{uuid.uuid4().hex}.partial")
    try:
        shutil.move(source, partial)
        _fsync_file(partial)
        partial.replace(final)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _fsync_file(path: pathlib.Path) -> None:
    # Opened for writing because Windows refuses to flush a read-only handle.
    with path.open("r+b") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: pathlib.Path) -> None:
    # Directories cannot be opened for fsync on every platform (Windows);
    # there the rename is as durable as the OS makes it.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
