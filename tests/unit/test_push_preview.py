"""What a one-message push says."""

from bridge.wire.messaging import MediaInfo, StoredMessage
from services.push.service import PREVIEW_CHARS, preview


def message(kind: str, text: str | None = None, name: str = "x") -> StoredMessage:
    media = None
    if kind != "text":
        media = MediaInfo(media_id="m", mime="a/b", size=1, url="/v1/media/m", name=name)
    return StoredMessage(
        id="i",
        conv_id="c",
        seq=1,
        sender_id="u",
        kind=kind,  # type: ignore[arg-type]
        text=text,
        media=media,
        reply_to=None,
        client_msg_id="k",
        created_at="2026-11-27T00:00:00.000Z",
    )


def test_text_and_media_previews() -> None:
    assert preview(message("text", "  hello  ")) == "hello"
    assert preview(message("image")) == "Photo"
    assert preview(message("image", "the red one")) == "Photo · the red one"
    assert preview(message("audio")) == "Voice note"
    assert preview(message("file", name="invoice.pdf")) == "File: invoice.pdf"


def test_long_text_is_cut_to_a_preview() -> None:
    cut = preview(message("text", "é" * 4000))
    assert len(cut) == PREVIEW_CHARS and cut.endswith("…")
    assert len(cut.encode()) < 1024  # far under Expo's 4 KiB payload
