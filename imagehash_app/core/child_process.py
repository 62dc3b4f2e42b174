"""What every helper process of the engine shares: how it starts, and that it ends with the app.

Spawned, not forked: safe beside CUDA and threads, and the default on macOS and Windows.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import threading
from collections.abc import Callable
from multiprocessing.context import SpawnContext


def spawn_context() -> SpawnContext:
    return multiprocessing.get_context("spawn")


def exit_with_parent(cleanup: Callable[[], None] | None = None) -> None:
    """In a helper process: end as soon as the app that started it is gone (after `cleanup`). A
    killed or crashed app never shuts its helpers down, and they would otherwise live on."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        try:
            if cleanup is not None:
                cleanup()
        finally:
            os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
