"""The worker process's current container; actors look it up when a message arrives, never at import."""

from __future__ import annotations

from common.bootstrap import Container

_current: Container | None = None


def set_container(container: Container | None) -> None:
    """Make `container` the one actors use (None forgets it)."""
    global _current
    _current = container


def container() -> Container:
    """The container set by `init_worker`; raises when the worker was not initialised."""
    if _current is None:
        raise RuntimeError("the worker is not initialised: call services.worker.bootstrap.init_worker() first")
    return _current
