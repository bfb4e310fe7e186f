"""Local disk media storage: layout, round trip, key validation, atomic save."""

from __future__ import annotations

import errno
import os
import pathlib

import pytest

from api.media.storage import LocalDiskStorage, MediaNotFound, MediaStorage, temp_dir

KEY = "ab3F_x-9Qz"


def _upload(root: pathlib.Path, data: bytes, name: str = "upload.part") -> pathlib.Path:
    source = temp_dir(root) / name
    source.write_bytes(data)
    return source


def test_round_trip(tmp_path: pathlib.Path) -> None:
    store: MediaStorage = LocalDiskStorage(tmp_path)
    source = _upload(tmp_path, b"hello media")

    store.save(KEY, source)

    assert not source.exists()
    with store.open(KEY) as f:
        assert f.read() == b"hello media"
    assert store.path(KEY) == tmp_path / "ab" / KEY


def test_short_key_is_its_own_shard(tmp_path: pathlib.Path) -> None:
    store = LocalDiskStorage(tmp_path)
    store.save("Z", _upload(tmp_path, b"z"))
    assert (tmp_path / "Z" / "Z").read_bytes() == b"z"


def test_save_replaces_existing_content(tmp_path: pathlib.Path) -> None:
    store = LocalDiskStorage(tmp_path)
    store.save(KEY, _upload(tmp_path, b"first"))
    store.save(KEY, _upload(tmp_path, b"second"))
    with store.open(KEY) as f:
        assert f.read() == b"second"


def test_missing_key(tmp_path: pathlib.Path) -> None:
    store = LocalDiskStorage(tmp_path)
    with pytest.raises(MediaNotFound):
        store.open(KEY)
    with pytest.raises(MediaNotFound):
        store.path(KEY)
    store.delete(KEY)  # deleting what is not there is fine


def test_delete(tmp_path: pathlib.Path) -> None:
    store = LocalDiskStorage(tmp_path)
    store.save(KEY, _upload(tmp_path, b"bye"))
    store.delete(KEY)
    with pytest.raises(MediaNotFound):
        store.open(KEY)


@pytest.mark.parametrize(
    "bad_key",
    ["../x", "a/b", "", ".", "..", "a\\b", "/etc/passwd", "x y", "ab\x00", "é", "k" * 129],
)
def test_bad_keys_are_refused(tmp_path: pathlib.Path, bad_key: str) -> None:
    store = LocalDiskStorage(tmp_path)
    source = _upload(tmp_path, b"data")
    with pytest.raises(ValueError):
        store.save(bad_key, source)
    with pytest.raises(ValueError):
        store.open(bad_key)
    with pytest.raises(ValueError):
        store.path(bad_key)
    with pytest.raises(ValueError):
        store.delete(bad_key)
    assert source.exists()  # a refused save leaves the upload alone


def test_temp_dir_is_created_inside_root(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "media"
    incoming = temp_dir(root)
    assert incoming == root / ".incoming"
    assert incoming.is_dir()
    assert incoming.stat().st_dev == root.stat().st_dev
    assert temp_dir(root) == incoming  # idempotent


def test_data_is_fsynced_before_the_rename(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync")
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)

    LocalDiskStorage(tmp_path).save(KEY, _upload(tmp_path, b"durable"))

    assert events[:2] == ["fsync", "replace"]


def test_save_across_filesystems_falls_back_to_move(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "elsewhere" / "upload.part"
    source.parent.mkdir()
    source.write_bytes(b"from another disk")
    real_replace = os.replace

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        # Simulate a temp folder on another filesystem: only the direct
        # rename out of it fails, as the kernel would with EXDEV.
        if pathlib.Path(src) == source:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    root = tmp_path / "media"
    store = LocalDiskStorage(root)

    store.save(KEY, source)

    assert not source.exists()
    assert (root / "ab" / KEY).read_bytes() == b"from another disk"
    assert [p.name for p in (root / "ab").iterdir()] == [KEY]  # no partial copy left


def test_other_rename_errors_propagate(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        raise PermissionError(errno.EACCES, "denied")

    monkeypatch.setattr(os, "replace", replace)
    source = _upload(tmp_path, b"data")
    with pytest.raises(PermissionError):
        LocalDiskStorage(tmp_path).save(KEY, source)
    assert source.exists()
