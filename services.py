"""The composition root: builds the store and the services from the configuration.

The only place that asks "folder or S3?"; routes and the CLI get services from here.
"""

from __future__ import annotations

import threading
from functools import cached_property
from pathlib import Path

from .core.config import Config
from .core.store import Store
from .core.templates import TemplateService


def make_store(config: Config) -> Store:
    if config.store == "s3":
        from .aws.s3_store import S3Store

        return S3Store(config.s3_bucket, config.s3_prefix, config.region)
    from .local.folder_store import FolderStore

    return FolderStore(Path(config.store_path))


class Services:
    """Everything the routes and the CLI call, made once per configuration."""

    def __init__(self, config: Config):
        self.config = config
        self._lock = threading.Lock()

    @cached_property
    def store(self) -> Store:
        return make_store(self.config)

    def environment_exists(self, name: str) -> bool:
        # Environments (a later issue) claim their lowercased name under environments/.
        return self.store.exists(f"environments/{name.lower()}/claim.json")

    @cached_property
    def templates(self) -> TemplateService:
        return TemplateService(self.store, self.environment_exists)
