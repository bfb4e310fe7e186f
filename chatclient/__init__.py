"""Python client of the chat backend: HTTP API + one device's MQTT connection.

    async with ChatHttp("http://localhost:8000") as http:
        me = await http.register("alice", "s3cret-pass", "Alice")
        creds = await http.create_device(platform="web")
        conv = await http.create_conversation([bob_user_id])
        async with ChatClient(creds, me.user_id, http=http) as client:
            ack = await client.send_text(conv["conv_id"], "hello")   # waits for the ack
            assert ack.status == "stored"
            message = await client.wait_for_message(lambda m: m.seq == ack.seq)
            async for event in client.events():                     # live stream
                ...

See chatclient/client.py for what the client does on your behalf (outbox,
de-duplication, gap filling, reconnect catch-up, presence).
"""

from bridge.mqtt import ConnectFailed, MqttError, NotAuthorized, PublishRefused
from bridge.wire.messaging import Ack, SendMessage, StoredMessage
from chatclient.client import ChatClient, endpoint_for
from chatclient.events import (
    AckEvent,
    CallEventReceived,
    CallStateChanged,
    DeskEventReceived,
    Event,
    MessageEvent,
    OtherEvent,
    PresenceChanged,
    QueueChanged,
    ReadReceiptEvent,
    SupportEventReceived,
    TypingIndicator,
)
from chatclient.http import ApiError, ChatHttp, DeviceCredentials, Session
from chatclient.outbox import Outbox, OutboxClosed, new_client_msg_id

__all__ = [
    "Ack",
    "AckEvent",
    "ApiError",
    "CallEventReceived",
    "CallStateChanged",
    "ChatClient",
    "ChatHttp",
    "ConnectFailed",
    "DeskEventReceived",
    "DeviceCredentials",
    "Event",
    "MessageEvent",
    "MqttError",
    "NotAuthorized",
    "OtherEvent",
    "Outbox",
    "OutboxClosed",
    "PresenceChanged",
    "PublishRefused",
    "QueueChanged",
    "ReadReceiptEvent",
    "SendMessage",
    "Session",
    "StoredMessage",
    "SupportEventReceived",
    "TypingIndicator",
    "endpoint_for",
    "new_client_msg_id",
]
