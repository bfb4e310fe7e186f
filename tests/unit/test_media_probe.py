"""Content probing: the verdict must come from the bytes, never from the name."""

from __future__ import annotations

import io
import pathlib
import random
import struct
import wave
import zlib

import pytest
from PIL import Image

from api.media.probe import (
    HEAD_BYTES,
    MediaLimits,
    MediaRejected,
    Probe,
    detect,
    probe_file,
)

ROOMY = MediaLimits(image_bytes=1_000_000, audio_bytes=1_000_000, file_bytes=1_000_000)


def _image_bytes(fmt: str, size: tuple[int, int] = (37, 21)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, fmt)
    return buf.getvalue()


def _write(path: pathlib.Path, data: bytes) -> pathlib.Path:
    path.write_bytes(data)
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def _wav_bytes(seconds: float, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(rate * seconds))
    return buf.getvalue()


def _mp3_bytes(frames: int) -> bytes:
    # Silent MPEG-1 Layer III frames, built by hand so no encoder is needed:
    # header FF FB 90 C0 = sync, no CRC, 128 kbit/s, 44.1 kHz, mono. With zero
    # side info every frame decodes to silence. 144*128000/44100 = 417 bytes.
    frame = b"\xff\xfb\x90\xc0" + bytes(417 - 4)
    return frame * frames


# --- detect -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("GIF", "image/gif"), ("WEBP", "image/webp")],
)
def test_detect_images(fmt: str, mime: str) -> None:
    assert detect(_image_bytes(fmt)) == ("image", mime)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", ("file", "application/pdf")),
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", ("file", "video/mp4")),
        (b"\x00\x00\x00\x18ftypM4A \x00\x00\x00\x00M4A isom", ("audio", "audio/mp4")),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", ("image", "image/heic")),
        (b"OggS\x00\x02" + bytes(40), ("audio", "audio/ogg")),
        (b"fLaC\x00\x00\x00\x22" + bytes(40), ("audio", "audio/x-flac")),
        (b"#!AMR\n" + bytes(40), ("audio", "audio/amr")),
        # Audio that is not a voice note or song travels as a plain file.
        (b"MThd\x00\x00\x00\x06" + bytes(40), ("file", "audio/midi")),
    ],
)
def test_detect_by_signature(head: bytes, expected: tuple[str, str]) -> None:
    assert detect(head) == expected


def test_detect_text() -> None:
    assert detect("hello, wörld\nsecond line\t€\n".encode()) == ("file", "text/plain")


def test_detect_text_with_multibyte_char_cut_by_head_window() -> None:
    head = b"ok " + "€".encode()[:2]
    assert detect(head) == ("file", "text/plain")


def test_detect_invalid_utf8_is_binary() -> None:
    assert detect(b"abc\xff\xfeabc") == ("file", "application/octet-stream")


def test_detect_nul_filled_is_binary_even_though_valid_utf8() -> None:
    assert detect(bytes(256)) == ("file", "application/octet-stream")


def test_detect_random_bytes() -> None:
    blob = random.Random(20240601).randbytes(4096)
    assert detect(blob) == ("file", "application/octet-stream")


# --- probe_file: images -----------------------------------------------------


def test_png_named_pdf_is_still_a_png(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path / "x.pdf", _image_bytes("PNG", (123, 45)))
    assert probe_file(path, ROOMY) == Probe("image", "image/png", 123, 45, None)


@pytest.mark.parametrize(
    ("fmt", "mime"), [("JPEG", "image/jpeg"), ("GIF", "image/gif"), ("WEBP", "image/webp")]
)
def test_image_dimensions(tmp_path: pathlib.Path, fmt: str, mime: str) -> None:
    path = _write(tmp_path / "upload.bin", _image_bytes(fmt, (64, 10)))
    assert probe_file(path, ROOMY) == Probe("image", mime, 64, 10, None)


def test_fake_png_is_invalid_payload(tmp_path: pathlib.Path) -> None:
    garbage = random.Random(3).randbytes(500)
    path = _write(tmp_path / "fake.png", b"\x89PNG\r\n\x1a\n" + garbage)
    with pytest.raises(MediaRejected) as caught:
        probe_file(path, ROOMY)
    assert caught.value.code == "invalid_payload"


def test_decompression_bomb_header_is_invalid_payload(tmp_path: pathlib.Path) -> None:
    # A tiny file whose header claims 100000 x 100000 pixels.
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b""))
        + _png_chunk(b"IEND", b"")
    )
    path = _write(tmp_path / "bomb.png", data)
    with pytest.raises(MediaRejected) as caught:
        probe_file(path, ROOMY)
    assert caught.value.code == "invalid_payload"


def test_heic_without_pillow_plugin_is_kept_with_unknown_size(tmp_path: pathlib.Path) -> None:
    Image.init()
    if "HEIF" in Image.OPEN:
        pytest.skip("a HEIF plugin is registered; this covers the plugin-less path")
    head = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(100)
    path = _write(tmp_path / "IMG_0001.HEIC", head)
    assert probe_file(path, ROOMY) == Probe("image", "image/heic", None, None, None)


# --- probe_file: audio ------------------------------------------------------


def test_wav_duration(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path / "voice.dat", _wav_bytes(0.5))
    probe = probe_file(path, ROOMY)
    assert (probe.kind, probe.mime, probe.width, probe.height) == (
        "audio",
        "audio/x-wav",
        None,
        None,
    )
    assert probe.duration_ms is not None
    assert abs(probe.duration_ms - 500) <= 5


def test_mp3_duration(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path / "voice", _mp3_bytes(frames=19))
    probe = probe_file(path, ROOMY)
    assert (probe.kind, probe.mime) == ("audio", "audio/mpeg")
    # 19 frames x 1152 samples / 44100 Hz = 496 ms; mutagen estimates CBR
    # length from the byte count, so allow a little slack.
    assert probe.duration_ms is not None
    assert abs(probe.duration_ms - 496) <= 10


def test_audio_with_unknown_duration_is_accepted(tmp_path: pathlib.Path) -> None:
    # mutagen has no AMR reader: the upload must still go through.
    path = _write(tmp_path / "note.amr", b"#!AMR\n" + bytes(320))
    assert probe_file(path, ROOMY) == Probe("audio", "audio/amr", None, None, None)


def test_corrupt_audio_is_accepted_without_duration(tmp_path: pathlib.Path) -> None:
    data = b"RIFF\x24\x00\x00\x00WAVE" + random.Random(5).randbytes(300)
    path = _write(tmp_path / "broken.wav", data)
    assert probe_file(path, ROOMY) == Probe("audio", "audio/x-wav", None, None, None)


# --- probe_file: plain files ------------------------------------------------


def test_text_file(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path / "photo.jpg", b"just some notes\nline two\n")
    assert probe_file(path, ROOMY) == Probe("file", "text/plain", None, None, None)


def test_text_longer_than_head_with_char_split_at_boundary(tmp_path: pathlib.Path) -> None:
    data = b"a" * (HEAD_BYTES - 1) + "é".encode() + b"tail\n"
    assert data[:HEAD_BYTES].endswith(b"\xc3")  # the split really happens
    path = _write(tmp_path / "long.txt", data)
    assert probe_file(path, ROOMY).mime == "text/plain"


def test_random_bytes_are_octet_stream(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path / "song.mp3", random.Random(20240601).randbytes(4096))
    assert probe_file(path, ROOMY) == Probe("file", "application/octet-stream", None, None, None)


def test_empty_file_is_invalid_payload(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path / "empty.png", b"")
    with pytest.raises(MediaRejected) as caught:
        probe_file(path, ROOMY)
    assert (caught.value.code, caught.value.message) == ("invalid_payload", "empty file")


# --- limits -----------------------------------------------------------------


def test_image_over_image_limit_is_too_large_even_under_file_limit(
    tmp_path: pathlib.Path,
) -> None:
    data = _image_bytes("PNG")
    limits = MediaLimits(image_bytes=len(data) - 1, audio_bytes=10**6, file_bytes=10**6)
    path = _write(tmp_path / "big.txt", data)
    with pytest.raises(MediaRejected) as caught:
        probe_file(path, limits)
    assert caught.value.code == "too_large"


def test_image_exactly_at_limit_is_accepted(tmp_path: pathlib.Path) -> None:
    data = _image_bytes("PNG")
    limits = MediaLimits(image_bytes=len(data), audio_bytes=1, file_bytes=1)
    path = _write(tmp_path / "edge.png", data)
    assert probe_file(path, limits).kind == "image"


def test_limit_follows_detected_kind_not_the_name(tmp_path: pathlib.Path) -> None:
    # Text named .png must be judged by the file limit, not the image limit.
    data = b"plain text " * 20
    limits = MediaLimits(image_bytes=10, audio_bytes=10, file_bytes=len(data))
    path = _write(tmp_path / "x.png", data)
    assert probe_file(path, limits).mime == "text/plain"


def test_audio_over_audio_limit_is_too_large(tmp_path: pathlib.Path) -> None:
    data = _wav_bytes(0.1)
    limits = MediaLimits(image_bytes=10**6, audio_bytes=len(data) - 1, file_bytes=10**6)
    path = _write(tmp_path / "voice.wav", data)
    with pytest.raises(MediaRejected) as caught:
        probe_file(path, limits)
    assert caught.value.code == "too_large"


def test_media_limits_helpers() -> None:
    limits = MediaLimits(image_bytes=3, audio_bytes=7, file_bytes=5)
    assert (limits.for_kind("image"), limits.for_kind("audio"), limits.for_kind("file")) == (
        3,
        7,
        5,
    )
    assert limits.largest == 7


def test_media_rejected_carries_code_and_message() -> None:
    exc = MediaRejected("too_large", "image is 9 bytes, limit is 8")
    assert exc.code == "too_large"
    assert exc.message == "image is 9 bytes, limit is 8"
    assert "too_large" in str(exc)
