"""Media upload and download.

Upload streams to a temp file with a hard cap (the largest per-kind limit), then
the content decides the type and the per-kind limit (api/media/probe.py).
Download is allowed to the uploader and to members of any conversation where a
message carried it; everyone else gets the same 404 as for a missing id, so ids
cannot be probed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path, PurePath
from typing import Annotated

from fastapi import APIRouter, File, Request, UploadFile, status
from fastapi.responses import FileResponse, StreamingResponse
from sqlalchemy import and_, exists, select
from sqlmodel import Session
from starlette.responses import Response

from api.deps import CurrentUser, StateDep
from api.errors import ApiError
from api.media.probe import MediaLimits, MediaRejected, probe_file
from api.media.storage import MediaNotFound, temp_dir
from api.schemas import MediaOut
from core.ids import is_valid_id, new_id
from core.models import Media
from services.persistence.store import media_info, member_t, message_t

router = APIRouter(prefix="/v1/media", tags=["media"])
CHUNK = 256 * 1024
# Multipart framing around the file (boundaries, part headers).
MULTIPART_OVERHEAD = 16 * 1024


def _limits(state: StateDep) -> MediaLimits:
    s = state.settings
    return MediaLimits(
        image_bytes=s.media_max_image_bytes,
        audio_bytes=s.media_max_audio_bytes,
        file_bytes=s.media_max_file_bytes,
    )


def _clean_name(raw: str | None) -> str:
    name = PurePath((raw or "").replace("\\", "/")).name.strip()
    name = "".join(ch for ch in name if ch.isprintable())[:255]
    return name or "file"


@router.post("", status_code=status.HTTP_201_CREATED)
def upload(
    file: Annotated[UploadFile, File()],
    request: Request,
    user: CurrentUser,
    state: StateDep,
) -> MediaOut:
    limits = _limits(state)
    declared = int(request.headers.get("content-length") or 0)
    if declared > limits.largest + MULTIPART_OVERHEAD:
        raise ApiError(413, "too_large", f"files are limited to {limits.largest} bytes")
    incoming = temp_dir(state.settings.effective_media_dir)
    with tempfile.NamedTemporaryFile(dir=incoming, delete=False) as handle:
        temp_path = Path(handle.name)
    try:
        size = _copy_capped(file, temp_path, limits.largest)
        probe = probe_file(temp_path, limits)
        media_id = new_id("f_")
        state.storage.save(media_id, temp_path)
    except MediaRejected as exc:
        raise ApiError(413 if exc.code == "too_large" else 422, exc.code, exc.message) from None
    finally:
        temp_path.unlink(missing_ok=True)
    media = Media(
        id=media_id,
        uploader_id=user.id,
        kind=probe.kind,
        mime=probe.mime,
        size=size,
        name=_clean_name(file.filename),
        storage_key=media_id,
        width=probe.width,
        height=probe.height,
        duration_ms=probe.duration_ms,
    )
    out = MediaOut(kind=media.kind, **media_info(media).model_dump())
    with Session(state.engine) as session:
        session.add(media)
        session.commit()
    return out


def _copy_capped(file: UploadFile, target: Path, cap: int) -> int:
    size = 0
    with target.open("wb") as out:
        while chunk := file.file.read(CHUNK):
            size += len(chunk)
            if size > cap:
                raise MediaRejected("too_large", f"files are limited to {cap} bytes")
            out.write(chunk)
    return size


@router.get("/{media_id}")
def download(media_id: str, user: CurrentUser, state: StateDep) -> Response:
    not_found = ApiError(404, "not_found", "no such media")
    if not is_valid_id(media_id):
        raise not_found
    # The connection is returned before the file is sent: a download may be slow.
    with Session(state.engine) as session:
        media = session.get(Media, media_id)
        if media is None or not _may_read(session, media, user.id):
            raise not_found
    headers = {"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"}
    try:
        local = state.storage.path(media.storage_key)
        if local is not None:
            return FileResponse(local, media_type=media.mime, filename=media.name, headers=headers)
        stream = state.storage.open(media.storage_key)
    except MediaNotFound:
        raise not_found from None
    return StreamingResponse(stream, media_type=media.mime, headers=headers)


def _may_read(session: Session, media: Media, user_id: str) -> bool:
    if media.uploader_id == user_id:
        return True
    shared_with_me = select(
        exists().where(
            and_(
                message_t.c.media_id == media.id,
                member_t.c.conv_id == message_t.c.conv_id,
                member_t.c.user_id == user_id,
            )
        )
    )
    return bool(session.connection().execute(shared_with_me).scalar())
