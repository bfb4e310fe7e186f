"""The operators' dashboard in a real browser: Debian's Chromium, headless,
driven by Playwright, against the whole system on its own stack (the support
queue is global). The operator's only broker connection is the page's.

Screenshots go to the test's tmp dir and, as copies, to /tmp/dashboard-shots/.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx
import pytest
from fastapi import FastAPI
from PIL import Image
from playwright.async_api import ConsoleMessage, Page, async_playwright, expect
from sqlalchemy import select

import api.dashboard_files as dashboard_files
from api.app import create_app
from chatclient.events import Event, TypingIndicator
from core.db import make_engine
from core.models import User
from tests.integration.support_helpers import customer, operator, support_event, support_stack
from tools.stack import Stack

pytestmark = pytest.mark.anyio

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path("/tmp/dashboard-shots")
PASSWORD = "correct horse"  # what the support helpers give every account
JS_CLIENT_BUILD = Path(__file__).resolve().parents[2] / "clients" / "js" / "dist" / "index.js"

expect.set_options(timeout=15_000)


@pytest.fixture
def desk_stack(
    database_factory: object, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    assert CHROMIUM.exists(), "Chromium is missing: `./chat test` installs Debian's chromium"
    assert JS_CLIENT_BUILD.exists(), (
        "the JavaScript client is not built: run `npm ci && npm run build` in clients/js"
    )
    stack = support_stack(database_factory(), tmp_path_factory.mktemp("dashboard"))  # type: ignore[operator]
    yield stack
    stack.stop()


def username_of(stack: Stack, user_id: str) -> str:
    engine = make_engine(stack.config.database_url)
    try:
        with engine.connect() as conn:
            query = select(User.username).where(User.id == user_id)
            username: str = conn.execute(query).scalar_one()
    finally:
        engine.dispose()
    return username


def png_bytes() -> bytes:
    picture = Image.new("RGB", (64, 40), (200, 140, 80))
    out = io.BytesIO()
    picture.save(out, "PNG")
    return out.getvalue()


@dataclass
class Dashboard:
    page: Page
    shots: Path
    prefix: str
    errors: list[str] = field(default_factory=list)

    async def sign_in(self, stack: Stack, user_id: str) -> None:
        page = self.page
        await page.goto(f"{stack.config.api_url}/dashboard/")
        await page.get_by_label("Username").fill(username_of(stack, user_id))
        await page.get_by_label("Password").fill(PASSWORD)
        await self.shot("login")
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.locator("#connection")).to_have_attribute("data-state", "live")

    async def shot(self, name: str) -> None:
        file = f"{self.prefix}-{name}.png"
        png = await self.page.screenshot(path=str(self.shots / file))
        await anyio.Path(SHOTS).mkdir(parents=True, exist_ok=True)
        await anyio.Path(SHOTS / file).write_bytes(png)


@contextlib.asynccontextmanager
async def dashboard(shots: Path, prefix: str) -> AsyncIterator[Dashboard]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            page = await browser.new_page(viewport={"width": 1440, "height": 900})
            board = Dashboard(page, shots, prefix)

            def on_console(message: ConsoleMessage) -> None:
                if message.type == "error":
                    board.errors.append(message.text)

            page.on("console", on_console)
            page.on("pageerror", lambda error: board.errors.append(str(error)))
            yield board
        finally:
            await browser.close()


async def test_an_operator_takes_a_ticket_and_answers_from_the_dashboard(
    desk_stack: Stack, tmp_path: Path
) -> None:
    async with (
        operator(desk_stack, "ana", status="away", connect=False) as ana,
        customer(desk_stack) as user,
        dashboard(tmp_path, "operator") as board,
    ):
        page = board.page
        await board.sign_in(desk_stack, ana.user_id)
        await expect(page.locator(".segment.active")).to_have_attribute("data-status", "away")
        queue = page.locator("#queue-list")
        await expect(queue).to_contain_text("No one is waiting")
        await board.shot("desk-empty")

        # A ticket is opened: it appears in the queue through the broker.
        subject = "Where is my <b>parcel</b>?"
        created = await user.http.open_ticket(
            subject, "high", "<img src=x onerror=alert(1)>It was due on Monday"
        )
        ticket_id, conv_id = created["ticket_id"], created["conv_id"]
        item = page.locator(f'.queue-item[data-ticket="{ticket_id}"]')
        await expect(item.locator(".qi-subject")).to_have_text(subject)  # as text, not markup
        await expect(item.locator("b")).to_have_count(0)
        await expect(item).to_contain_text(user.name)
        await expect(item.locator(".chip")).to_have_text("High")
        await expect(item.locator(".qi-wait")).to_have_text(re.compile(r"0:0[2-9]"))  # it ticks
        await board.shot("queue")

        # Take it: the chat opens with the history, and the queue empties.
        await item.get_by_role("button", name="Take").click()
        chat = page.locator(".pane-chat")
        await expect(chat.locator(".chat-head")).to_contain_text(user.name)
        history = chat.locator(".chat-scroll")
        await expect(history).to_contain_text("<img src=x onerror=alert(1)>It was due on Monday")
        await expect(history.locator("img")).to_have_count(0)
        await expect(queue).to_contain_text("No one is waiting")
        await expect(page.locator(f'.chat-item[data-ticket="{ticket_id}"]')).to_contain_text(
            user.name
        )
        assigned = await support_event(user, ticket_id, "assigned")
        assert assigned.agent is not None and assigned.agent.id == ana.user_id
        assert assigned.reason == "taken" and assigned.conv_id == conv_id

        # Typing, both ways.
        await user.client.set_typing(conv_id, True)
        await expect(page.locator(".typing-line")).to_contain_text(f"{user.name} is typing")
        composer = page.get_by_role("textbox", name="Message")
        await composer.press_sequentially("Let me check.")

        def operator_typing(event: Event) -> bool:
            return (
                isinstance(event, TypingIndicator)
                and event.conv_id == conv_id
                and event.user_id == ana.user_id
                and event.typing
            )

        await user.client.wait_for_event(operator_typing)

        # Shift+Enter is a new line, Enter sends (over the page's MQTT connection).
        await composer.press("Shift+Enter")
        await composer.press_sequentially("One moment, please.")
        await composer.press("Enter")
        answer = await user.client.wait_for_message(
            lambda m: m.conv_id == conv_id and m.sender_id == ana.user_id
        )
        assert answer.text == "Let me check.\nOne moment, please."
        await expect(composer).to_have_value("")
        await expect(chat.locator(".msg-out").last).to_contain_text("One moment, please.")
        await expect(chat.locator(".sla")).to_have_count(0)  # answered: no deadline shown

        # The customer's answer arrives live.
        await user.client.send_text(conv_id, "Thanks!")
        await expect(chat.locator(".msg-in").last).to_contain_text("Thanks!")
        await expect(page.locator(".typing-line")).not_to_contain_text("is typing")

        # A canned reply: saved, inserted with the customer's first name, sent.
        await page.get_by_role("button", name="New").click()
        await page.get_by_label("Title").fill("Greeting")
        await page.get_by_label("Reply text").fill("Hello {customer}, happy to help.")
        await page.get_by_role("button", name="Save reply").click()
        await page.locator("#canned-list .canned-use", has_text="Greeting").click()
        first_name = user.name.split()[0]
        await expect(composer).to_have_value(f"Hello {first_name}, happy to help.")
        await composer.press("Enter")
        greeting = await user.client.wait_for_message(
            lambda m: m.conv_id == conv_id and m.sender_id == ana.user_id
        )
        assert greeting.text == f"Hello {first_name}, happy to help."

        # A file: uploaded, sent as the kind the server found, shown from a blob URL.
        await page.locator("input[type=file]").set_input_files(
            files=[{"name": "label.png", "mimeType": "image/png", "buffer": png_bytes()}]
        )
        photo = await user.client.wait_for_message(
            lambda m: m.conv_id == conv_id and m.sender_id == ana.user_id
        )
        assert photo.kind == "image" and photo.media is not None
        assert photo.media.name == "label.png"
        image = chat.locator(".msg-out img.msg-image").last
        await expect(image).to_have_attribute("src", re.compile(r"^blob:"))
        await board.shot("chat")

        # Close: confirmed in a dialog; the customer is told; the chat is read-only.
        await chat.get_by_role("button", name="Close", exact=True).click()
        await page.get_by_role("button", name="Close chat").click()
        closed = await support_event(user, ticket_id, "closed")
        assert closed.reason == "closed_by_agent"
        await expect(chat.locator(".composer-closed")).to_contain_text("This chat is closed")
        await expect(page.locator("#my-chats")).to_contain_text("No open chats")
        await board.shot("closed")
        assert board.errors == []


async def test_a_supervisor_sees_the_floor(desk_stack: Stack, tmp_path: Path) -> None:
    async with (
        operator(
            desk_stack, "marta", status="away", supervisor=True, connect=False, capacity=4
        ) as boss,
        operator(desk_stack, "ben", capacity=3) as ben,
        dashboard(tmp_path, "supervisor") as board,
    ):
        page = board.page
        await board.sign_in(desk_stack, boss.user_id)
        await page.get_by_role("button", name="Floor").click()
        row = page.locator(f'#floor-operators-table tr[data-operator="{ben.user_id}"]')
        await expect(row).to_contain_text(ben.name)
        await expect(row.locator(".state")).to_have_text("Online")
        await expect(row.locator(".conn")).to_have_text("Connected")
        await expect(row.locator(".load-text")).to_have_text("0 / 3")
        mine = page.locator(f'#floor-operators-table tr[data-operator="{boss.user_id}"]')
        await expect(mine.locator(".conn")).to_have_text("Connected")  # the page's connection
        await expect(mine.locator(".state")).to_have_text("Away")

        # Changes arrive live, from the retained floor snapshot.
        await ben.http.set_operator_status("away")
        await expect(row.locator(".state")).to_have_text("Away")
        await board.shot("floor")
        assert board.errors == []


async def test_without_the_javascript_client_the_api_serves_the_page_and_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(dashboard_files, "JS_CLIENT_DIST", tmp_path / "dist")
    monkeypatch.setattr(dashboard_files, "MQTT_BROWSER_MODULE", tmp_path / "mqtt.esm.js")
    problems = dashboard_files.mount_dashboard(FastAPI())
    assert len(problems) == 2 and "npm run build" in problems[0]
    # No lifespan (no database, no broker): the static routes need none.
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        page = await client.get("/dashboard/")
        assert page.status_code == 200 and '<script type="importmap">' in page.text
        assert "script-src 'self' 'sha256-" in page.headers["content-security-policy"]
        assert (await client.get("/dashboard/client/index.js")).status_code == 404
        assert (await client.get("/dashboard/vendor/mqtt.js")).status_code == 404
        moved = await client.get("/dashboard")
        assert moved.status_code == 307 and moved.headers["location"] == "/dashboard/"
