"""Warnings logged once when a service starts: settings that work but expose something."""

from __future__ import annotations

import stat
from pathlib import Path

from common.config import Settings
from common.db import sqlite_file
from common.logging import get_logger

log = get_logger("integrations.startup")


def log_startup_warnings(settings: Settings) -> None:
    """Warn about an http:// PUBLIC_BASE_URL outside standalone mode, and about private files others can read."""
    if not settings.standalone and settings.public_base_url.lower().startswith("http://"):
        log.warning(
            "startup.public_base_url_not_https",
            public_base_url=settings.public_base_url,
            note="reconnect links in emails and the OAuth redirect travel in clear text: use an https:// URL",
        )
    for path in _private_files(settings):
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            continue
        if mode & 0o077:
            log.warning(
                "startup.file_readable_by_others",
                path=str(path),
                mode=f"{mode:04o}",
                note=f"it holds secrets: chmod 600 {path}",
            )


def _private_files(settings: Settings) -> list[Path]:
    files = [Path(settings.var_dir) / "token-keys"]
    database = sqlite_file(settings.database_url)
    return files if database is None else [*files, database]
