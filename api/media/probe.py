"""Decide what an uploaded file is from its bytes.

The file name and the declared Content-Type are only the client's claim: a
buggy or hostile client can call an executable ``photo.jpg`` or send a PNG as
``application/pdf``. Other clients render what we say a message holds, so the
kind, the MIME type and the image size all come from the content itself, and
the per-kind size limit is applied to that verdict, not to the claim.
"""

from __future__ import annotations

import codecs
import math
import pathlib
from dataclasses import dataclass
from typing import Literal

import filetype
import mutagen
from PIL import Image

MediaKind = Literal["image", "audio", "file"]
RejectCode = Literal["too_large", "invalid_payload"]

# filetype never looks past its first 8 KiB, so neither do we; the text check
# uses the same window so a huge upload is never read whole just to be sniffed.
HEAD_BYTES = 8192

# Image MIME types we show inline, mapped to the Pillow format that must be
# able to read them. Passing only that format to Image.open means a file
# whose magic says PNG cannot be "rescued" by some other Pillow plugin.
# APNG is a PNG with extra chunks: any PNG reader shows its first frame.
_IMAGE_FORMATS: dict[str, str] = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/apng": "PNG",
    "image/gif": "GIF",
    "image/webp": "WEBP",
    "image/heic": "HEIF",
    "image/heif": "HEIF",
}

# Audio MIME types we play inline (voice notes and common music formats).
# Other audio/* types that filetype knows (MIDI, AIFF) travel as plain files.
_AUDIO_MIMES = frozenset(
    {
        "audio/mpeg",
        "audio/mp4",
        "audio/m4a",
        "audio/x-m4a",
        "audio/aac",
        "audio/ogg",
        "audio/opus",
        "audio/wav",
        "audio/x-wav",
        "audio/amr",
        "audio/flac",
        "audio/x-flac",
        "audio/webm",
    }
)

# Control characters that do not occur in real text; a NUL-filled or binary
# blob can still be valid UTF-8, so decoding alone is not proof of text.
_NON_TEXT_CONTROLS = frozenset(chr(c) for c in range(0x20) if chr(c) not in "\t\n\r\f\b\x1b")


@dataclass(frozen=True)
class MediaLimits:
    """Maximum size in bytes for each kind of media."""

    image_bytes: int
    audio_bytes: int
    file_bytes: int

    def for_kind(self, kind: MediaKind) -> int:
        if kind == "image":
            return self.image_bytes
        if kind == "audio":
            return self.audio_bytes
        return self.file_bytes

    @property
    def largest(self) -> int:
        """Cap for the upload stream, which must stop before the kind is known."""
        return max(self.image_bytes, self.audio_bytes, self.file_bytes)


@dataclass(frozen=True)
class Probe:
    """What the content turned out to be."""

    kind: MediaKind
    mime: str
    width: int | None
    height: int | None
    duration_ms: int | None


class MediaRejected(Exception):
    """The upload cannot be accepted; ``code`` is stable for API clients."""

    def __init__(self, code: RejectCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code: RejectCode = code
        self.message = message


def detect(head: bytes) -> tuple[MediaKind, str]:
    """Return kind and MIME type judged from the first bytes of a file."""
    guess = filetype.guess(head) if head else None
    if guess is None:
        return "file", "text/plain" if _looks_like_text(head) else "application/octet-stream"
    mime = str(guess.mime)
    if mime in _IMAGE_FORMATS:
        return "image", mime
    if mime in _AUDIO_MIMES:
        return "audio", mime
    # Recognised but not shown inline (PDF, zip, video, ...): keep the real
    # type so the download is labelled correctly.
    return "file", mime


def probe_file(path: pathlib.Path, limits: MediaLimits) -> Probe:
    """Inspect a finished upload; raise MediaRejected if it must not be stored."""
    size = path.stat().st_size
    if size == 0:
        raise MediaRejected("invalid_payload", "empty file")
    with path.open("rb") as f:
        head = f.read(HEAD_BYTES)
    kind, mime = detect(head)
    limit = limits.for_kind(kind)
    if size > limit:
        raise MediaRejected("too_large", f"{kind} is {size} bytes, limit is {limit}")
    if kind == "image":
        width, height = _image_size(path, mime)
        return Probe(kind, mime, width, height, None)
    if kind == "audio":
        return Probe(kind, mime, None, None, _audio_duration_ms(path))
    return Probe(kind, mime, None, None, None)


def _looks_like_text(head: bytes) -> bool:
    # An incremental decoder with final=False accepts a multibyte character
    # cut off by the end of the head window, but still rejects bad bytes.
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return not any(ch in _NON_TEXT_CONTROLS for ch in text)


def _image_size(path: pathlib.Path, mime: str) -> tuple[int | None, int | None]:
    pillow_format = _IMAGE_FORMATS[mime]
    Image.init()
    if pillow_format not in Image.OPEN:
        # HEIC needs an optional plugin (pillow-heif). Without it we cannot
        # check the file, but refusing every iPhone photo would be worse than
        # storing one with unknown dimensions.
        return None, None
    try:
        # Image.open only parses the header; pixel data is never decoded here.
        with Image.open(path, formats=[pillow_format]) as im:
            width, height = im.size
    except Image.DecompressionBombError as exc:
        raise MediaRejected("invalid_payload", "image dimensions are too large") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        # UnidentifiedImageError is an OSError; plugins also leak SyntaxError
        # and ValueError on malformed headers.
        raise MediaRejected("invalid_payload", f"not a readable {mime} image") from exc
    return width, height


def _audio_duration_ms(path: pathlib.Path) -> int | None:
    try:
        audio = mutagen.File(path)
    except Exception:
        # Duration is a nicety for the player; mutagen raises a variety of
        # errors on odd streams and none of them should fail the upload.
        return None
    if audio is None or audio.info is None:
        return None
    seconds = getattr(audio.info, "length", None)
    if not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds < 0:
        return None
    return round(seconds * 1000)
