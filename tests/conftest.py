pytest_plugins = ["core.pytest_plugin"]
