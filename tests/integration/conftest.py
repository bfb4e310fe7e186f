"""Fixtures of the integration tests beyond the shared stack."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.support_helpers import support_stack
from tools.expo_double import ExpoDouble
from tools.stack import Stack


@pytest.fixture
def desk_stack(
    database_factory: object,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
    expo: ExpoDouble,
) -> Iterator[Stack]:
    """A stack of its own for live-support tests (the queue is global). A test
    marked `@pytest.mark.support_settings(NAME="value", ...)` changes settings."""
    marker = request.node.get_closest_marker("support_settings")
    settings = {"EXPO_API_URL": expo.url, **(marker.kwargs if marker else {})}
    url = database_factory()  # type: ignore[operator]
    stack = support_stack(url, tmp_path_factory.mktemp("support"), **settings)
    yield stack
    stack.stop()
