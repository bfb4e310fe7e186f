"""The call tokens carry exactly the claims livekit-api's own `AccessToken`
would: the minter signs a copy of claims the library built once
(services/callsig/tokens.py), so this guards against the library changing
what a join token holds."""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest
from livekit import api

from services.callsig.tokens import TokenMinter

KEY, SECRET = "devkey", "a-secret-of-at-least-32-characters!"
TTL = timedelta(minutes=10)


def _library_token(room: str, identity: str, name: str) -> str:
    return (
        api.AccessToken(KEY, SECRET)
        .with_identity(identity)
        .with_name(name)
        .with_grants(api.VideoGrants(room_join=True, room=room))
        .with_ttl(TTL)
        .to_jwt()
    )


def _payload(token: str) -> dict[str, object]:
    return dict(jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": True}))


@pytest.mark.parametrize("name", ["Alice", "Ünïcødé 名前", ""])
def test_a_minted_token_holds_what_livekit_api_would_put_in_it(name: str) -> None:
    minter = TokenMinter("ws://livekit.test", KEY, SECRET, TTL)
    join = minter.join("c_call1", "u_alice", name)
    expected = _library_token("c_call1", "u_alice", name)

    verifier = api.TokenVerifier(KEY, SECRET)
    assert verifier.verify(join.token) == verifier.verify(expected)
    ours, theirs = _payload(join.token), _payload(expected)
    # Issued within the same second or the next: the times may differ by one.
    for claim in ("nbf", "exp"):
        assert abs(int(ours.pop(claim)) - int(theirs.pop(claim))) <= 1  # type: ignore[call-overload]
    assert ours == theirs
    assert jwt.get_unverified_header(join.token) == jwt.get_unverified_header(expected)


def test_a_token_is_good_for_its_own_room_only_and_for_its_ttl() -> None:
    minter = TokenMinter("ws://livekit.test", KEY, SECRET, TTL)
    payload = _payload(minter.join("c_call1", "u_alice", "Alice").token)
    assert payload["video"] == {
        "roomJoin": True,
        "room": "c_call1",
        "canPublish": True,
        "canSubscribe": True,
        "canPublishData": True,
    }
    assert payload["exp"] == payload["nbf"] + TTL.total_seconds()  # type: ignore[operator]
    assert (
        minter.join("c_call2", "u_alice", "Alice").token
        != minter.join("c_call1", "u_alice", "Alice").token
    )
