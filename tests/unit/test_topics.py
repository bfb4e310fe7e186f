"""Topic building, parsing and filter matching."""

import pytest

from bridge import topics
from bridge.topics import UpKind


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("conv/+/msg/+", "conv/c1/msg/u1", True),
        ("conv/+/msg/+", "conv/c1/read/u1", False),
        ("conv/+/msg/+", "conv/c1/msg", False),
        ("conv/+/msg/+", "conv/c1/msg/u1/x", False),
        ("user/u1/#", "user/u1", True),
        ("user/u1/#", "user/u1/conv/c/msg", True),
        ("user/u1/#", "user/u2/ack", False),
        ("#", "anything/at/all", True),
        ("a/b", "a/b", True),
        ("a/b", "a/c", False),
    ],
)
def test_matches(topic_filter: str, topic: str, expected: bool) -> None:
    assert topics.matches(topic_filter, topic) is expected


def test_up_topics_round_trip() -> None:
    topic = topics.conv_up("c_1", UpKind.MSG, "u_2")
    assert topic == "conv/c_1/msg/u_2"
    assert topics.parse_conv_up(topic) == topics.ConvUp("c_1", UpKind.MSG, "u_2")
    assert topics.parse_conv_up("conv/c_1/nope/u_2") is None
    assert topics.parse_conv_up("conv/c_1/msg") is None


def test_call_topics_round_trip() -> None:
    topic = topics.call_up("k_1", topics.CallAction.ACCEPT, "u_2")
    assert topic == "call/k_1/accept/u_2"
    assert topics.matches(topics.call_up_filter(), topic)
    assert topics.matches(topics.call_up_any("u_2"), topic)
    assert not topics.matches(topics.call_up_any("u_3"), topic)
    assert topics.parse_call_up(topic) == topics.CallUp("k_1", topics.CallAction.ACCEPT, "u_2")
    assert topics.parse_call_up("call/k_1/dial/u_2") is None
    assert topics.parse_call_up("conv/k_1/accept/u_2") is None
    # The retained state sits under the user's own tree, next to the events.
    assert topics.matches(topics.user_root("u_2"), topics.user_call_state("u_2"))
    assert topics.user_call_state("u_2") != topics.user_call("u_2")
