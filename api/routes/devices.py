"""Devices and their MQTT credentials (one set per device, revocable alone)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine
from sqlmodel import Session

from api.deps import CurrentUser, StateDep
from api.errors import ApiError
from api.schemas import DeviceIn, DeviceOut, MqttCredentials, PushTokenIn, PushTokenOut
from api.security import new_mqtt_password
from bridge import acl, topics
from core.ids import new_id
from core.models import Device
from core.timefmt import utcnow

router = APIRouter(prefix="/v1/devices", tags=["devices"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_device(body: DeviceIn, user: CurrentUser, state: StateDep) -> DeviceOut:
    device_id = new_id("d_")
    password = new_mqtt_password()
    # Broker first: if it refuses, nothing is recorded. If the database then
    # fails, the credentials are taken back so no orphan can connect.
    await state.provisioner.create_device(
        user.id, device_id, password, acl.support_roles_for(user.role)
    )
    device = Device(
        id=device_id, user_id=user.id, platform=body.platform, push_token=body.push_token
    )
    try:
        await run_in_threadpool(_insert, state.engine, device)
    except Exception:
        await state.provisioner.delete_device(device_id)
        raise
    settings = state.settings
    return DeviceOut(
        device_id=device_id,
        mqtt=MqttCredentials(
            ws_url=settings.effective_ws_url,
            tcp_host=settings.public_mqtt_host,
            tcp_port=settings.mqtt_tcp_port,
            username=device_id,
            password=password,
            client_id=device_id,
        ),
    )


def _insert(engine: Engine, device: Device) -> None:
    with Session(engine) as session:
        session.add(device)
        session.commit()


@router.delete("/{device_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_device(device_id: str, user: CurrentUser, state: StateDep) -> Response:
    device = await run_in_threadpool(_own_device, state, device_id, user.id)
    await state.provisioner.delete_device(device_id)
    if device.revoked_at is None:
        await run_in_threadpool(_revoke, state, device_id)
    # The broker's dropping it published its Last Will (offline); the retained
    # presence of a device that no longer exists is then cleared.
    state.mqtt.publish(topics.presence(user.id, device_id), b"", qos=1, retain=True)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/{device_id}/push-token")
async def set_push_token(
    device_id: str, body: PushTokenIn, user: CurrentUser, state: StateDep
) -> PushTokenOut:
    """Give a device its Expo push token (apps get one after login), or take it away."""
    await run_in_threadpool(_set_push_token, state, device_id, user.id, body.push_token)
    return PushTokenOut(device_id=device_id, push_token=body.push_token)


def _set_push_token(state: StateDep, device_id: str, user_id: str, token: str | None) -> None:
    with Session(state.engine) as session:
        device = session.get(Device, device_id)
        if device is None or device.user_id != user_id or device.revoked_at is not None:
            raise ApiError(404, "not_found", "no such device of yours")
        device.push_token = token
        session.add(device)
        session.commit()


def _own_device(state: StateDep, device_id: str, user_id: str) -> Device:
    with Session(state.engine) as session:
        device = session.get(Device, device_id)
        if device is None or device.user_id != user_id:
            raise ApiError(404, "not_found", "no such device of yours")
        return device


def _revoke(state: StateDep, device_id: str) -> None:
    with Session(state.engine) as session:
        device = session.get(Device, device_id)
        if device is not None:
            device.revoked_at = utcnow()
            device.push_token = None  # a removed device takes no pushes
            session.add(device)
            session.commit()
