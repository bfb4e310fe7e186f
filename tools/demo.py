"""`./chat demo`: two people chat over MQTT-over-WebSocket, with latencies.

Starts its own system (SQLite, in a temporary folder) unless `--api URL` points
at a running one (`./chat run`). A seller and a buyer open a conversation, trade a
few messages and a photo, read receipts and typing flow, and each line printed
says what arrived where and how long after it was sent.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import secrets
import tempfile
import time
from pathlib import Path

from PIL import Image

from chatclient import (
    ChatClient,
    ChatHttp,
    MessageEvent,
    ReadReceiptEvent,
    SendMessage,
    TypingIndicator,
    new_client_msg_id,
)
from tools.stack import Stack, StackConfig


async def join(api_url: str, name: str) -> tuple[ChatHttp, ChatClient]:
    http = ChatHttp(api_url)
    session = await http.register(f"{name.lower()}_{secrets.token_hex(3)}", "demo-password", name)
    creds = await http.create_device("android")
    client = ChatClient(creds, session.user_id, http=http)
    await client.connect()
    return http, client


def photo() -> bytes:
    image = Image.new("RGB", (640, 480), (30, 120, 200))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG")
    return buffer.getvalue()


async def deliver(
    sender: ChatClient, receiver: ChatClient, conv_id: str, body: SendMessage, names: dict[str, str]
) -> None:
    started = time.perf_counter()
    sent = sender.send(conv_id, body)
    while True:
        event = await receiver.next_event(10)
        if isinstance(event, MessageEvent) and event.message.client_msg_id == body.client_msg_id:
            break
    ack = await sent
    latency = (event.received_at - started) * 1000
    message = event.message
    what = (
        message.text
        if message.kind == "text"
        else (
            f"[{message.kind}] {message.media.mime} {message.media.width}x{message.media.height} "
            f"{message.media.size} B"
            if message.media
            else message.kind
        )
    )
    print(
        f"  {names[receiver.user_id]:>6} got seq {message.seq} from "
        f"{names[message.sender_id]}: {what!r}  ({latency:.2f} ms, ack {ack.status})"
    )


async def run(api_url: str) -> None:
    seller_http, seller = await join(api_url, "Seller")
    buyer_http, buyer = await join(api_url, "Buyer")
    names = {seller.user_id: "Seller", buyer.user_id: "Buyer"}
    try:
        conv = (await buyer_http.create_conversation([seller.user_id]))["conv_id"]
        print(f"Conversation {conv} between Buyer and Seller, over MQTT-over-WebSocket:")
        script = [
            (buyer, seller, "Hi! Is the bicycle still for sale?"),
            (seller, buyer, "Yes, it is. 120 AZN."),
            (buyer, seller, "Could you send a photo of the frame?"),
        ]
        for sender, receiver, text in script:
            body = SendMessage(client_msg_id=new_client_msg_id(), kind="text", text=text)
            await deliver(sender, receiver, conv, body, names)
        await seller.set_typing(conv, True)
        typing = await buyer.wait_for_event(lambda e: isinstance(e, TypingIndicator), 5)
        print(f"  {'Buyer':>6} sees typing from {names[typing.user_id]}")  # type: ignore[union-attr]
        media = await seller_http.upload(photo(), "frame.jpg", "image/jpeg")
        body = SendMessage(
            client_msg_id=new_client_msg_id(),
            kind="image",
            media_id=media["media_id"],
            text="Here it is",
        )
        await deliver(seller, buyer, conv, body, names)
        downloaded = await buyer_http.download(media["url"])
        print(f"  {'Buyer':>6} downloaded the photo: {len(downloaded)} bytes")
        await buyer.mark_read(conv, 4)
        receipt = await seller.wait_for_event(lambda e: isinstance(e, ReadReceiptEvent), 5)
        print(f"  {'Seller':>6} sees Buyer read up to seq {receipt.seq}")  # type: ignore[union-attr]
        listed = await buyer_http.list_conversations()
        print(
            f"Buyer's conversation list: {len(listed)} conversation(s), "
            f"last message {listed[0]['last_message']['text']!r}, "
            f"unread {listed[0]['unread_count']}"
        )
    finally:
        for client in (seller, buyer):
            await client.close()
        for http in (seller_http, buyer_http):
            await http.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--api", help="URL of a running API (default: start a system here)")
    args = parser.parse_args()
    if args.api:
        asyncio.run(run(args.api))
        return
    data_dir = Path(tempfile.mkdtemp(prefix="chat-demo-"))
    stack = Stack(
        StackConfig(
            data_dir=data_dir, database_url=f"sqlite:///{data_dir}/chat.db", log_level="WARNING"
        )
    )
    print("Starting broker, API and persistence (SQLite)...")
    stack.start()
    try:
        asyncio.run(run(stack.config.api_url))
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
