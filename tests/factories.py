"""Test data factories: users with tokens and devices, made through the real API."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class ApiUser:
    user_id: str
    token: str
    username: str
    api_url: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(
            method, self.api_url + path, headers=self.headers, timeout=10, **kwargs
        )

    def device(self, platform: str = "web") -> dict[str, Any]:
        response = self.request("POST", "/v1/devices", json={"platform": platform})
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def conversation(self, *others: ApiUser | str, title: str | None = None) -> str:
        """Open a conversation with other users (given as users or user ids)."""
        ids = [o if isinstance(o, str) else o.user_id for o in others]
        body: dict[str, Any] = {"member_ids": ids}
        if title:
            body["title"] = title
        response = self.request("POST", "/v1/conversations", json=body)
        assert response.status_code in (200, 201), response.text
        conv_id: str = response.json()["conv_id"]
        return conv_id


def register(api_url: str, name: str = "user") -> ApiUser:
    username = f"{name}_{secrets.token_hex(4)}"
    response = httpx.post(
        f"{api_url}/v1/auth/register",
        timeout=10,
        json={"username": username, "password": "correct horse", "display_name": name.title()},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return ApiUser(body["user_id"], body["access_token"], username, api_url)
