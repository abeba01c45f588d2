"""The extension's version (pyproject.toml's [project] version says the same; a test checks)."""

__version__ = "0.1.0"
