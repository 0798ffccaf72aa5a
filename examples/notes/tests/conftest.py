from pathlib import Path

import pytest


@pytest.fixture
def extra_plugins():
    """Load this folder's plugin as `notes` next to the project's own plugins."""
    return {"notes": Path(__file__).resolve().parent.parent / "turnstile_notes"}
