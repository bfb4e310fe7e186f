"""`.env.example` documents every setting, and nothing that is not one."""

import re
from pathlib import Path

from core.config import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def test_the_example_names_every_setting() -> None:
    named = {
        match.group(1).lower()
        for line in EXAMPLE.read_text().splitlines()
        if (match := re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=", line))
    }
    assert named == set(Settings.model_fields)
