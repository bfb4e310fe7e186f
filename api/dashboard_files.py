"""Serving the operators' dashboard (docs/dashboard.md): its static files, the
JavaScript client's build and the mqtt package's browser ES module, all from
this checkout."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboard"
JS_CLIENT_DIR = Path(__file__).resolve().parent.parent / "clients" / "js"
JS_CLIENT_DIST = JS_CLIENT_DIR / "dist"
MQTT_BROWSER_MODULE = JS_CLIENT_DIR / "node_modules" / "mqtt" / "dist" / "mqtt.esm.js"


class DashboardFiles(StaticFiles):
    """Static files that browsers revalidate (an updated dashboard is seen on the
    next load) and, for pages, a Content-Security-Policy: scripts only from here
    and the page's own import map, connections to the API and the broker's
    WebSocket, images and media from blob URLs made of fetched attachments, and
    the blob worker the mqtt module keeps its timers in."""

    def __init__(self, directory: Path, *, html: bool = False) -> None:
        super().__init__(directory=directory, html=html)
        self.policy = ""
        if html:
            index = (directory / "index.html").read_text(encoding="utf-8")
            inline = re.findall(r"<script type=\"importmap\">(.*?)</script>", index, re.DOTALL)
            hashes = " ".join(
                f"'sha256-{base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()}'"
                for text in inline
            )
            self.policy = (
                f"default-src 'self'; script-src 'self' {hashes}; style-src 'self'; "
                "img-src 'self' blob: data:; media-src 'self' blob:; worker-src 'self' blob:; "
                "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'self'; "
                "frame-ancestors 'none'; form-action 'self'"
            )

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        if self.policy and response.headers.get("content-type", "").startswith("text/html"):
            response.headers["Content-Security-Policy"] = self.policy
            response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def mount_dashboard(app: FastAPI) -> list[str]:
    """Serve the dashboard at `/dashboard/`, the JavaScript client's build at
    `/dashboard/client/` and the mqtt browser module at `/dashboard/vendor/mqtt.js`
    (the page's import map maps `mqtt` to it). What is missing is returned (to be
    logged); the API runs without it and the page says what to build."""
    problems: list[str] = []

    @app.get("/dashboard", include_in_schema=False)
    def dashboard_slash() -> RedirectResponse:
        return RedirectResponse("/dashboard/")

    if (JS_CLIENT_DIST / "index.js").is_file():
        app.mount("/dashboard/client", DashboardFiles(JS_CLIENT_DIST), name="dashboard-client")
    else:
        problems.append(
            f"the JavaScript client is not built ({JS_CLIENT_DIST} is missing): "
            "run `npm ci && npm run build` in clients/js"
        )
    if MQTT_BROWSER_MODULE.is_file():

        @app.get("/dashboard/vendor/mqtt.js", include_in_schema=False)
        def mqtt_module() -> FileResponse:
            return FileResponse(
                MQTT_BROWSER_MODULE,
                media_type="text/javascript",
                headers={"Cache-Control": "no-cache"},
            )

    else:
        problems.append(
            f"the mqtt browser module is missing ({MQTT_BROWSER_MODULE}): "
            "run `npm ci` in clients/js"
        )
    app.mount("/dashboard", DashboardFiles(DASHBOARD_DIR, html=True), name="dashboard")
    return problems
