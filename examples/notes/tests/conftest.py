from pathlib import Path

import pytest


@pytest.fixture
def extra_plugins():
    """Load this folder's plugin as `notes` next to the project's own plugins."""
    return {"notes": Path(__file__).resolve().parent.parent / "turnstile_notes"}


@pytest.fixture
def plugins_dir(plugins_dir, tmp_path):
    """The project's plugins, less a drop-in `notes` (docs/plugins.md builds one): this folder's plugin is `notes` here."""
    if not (plugins_dir / "notes").exists():
        return plugins_dir
    root = tmp_path / "plugins"
    root.mkdir()
    for folder in plugins_dir.iterdir():
        if folder.name != "notes":
            (root / folder.name).symlink_to(folder, target_is_directory=folder.is_dir())
    return root
