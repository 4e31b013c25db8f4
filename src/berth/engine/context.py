"""Where the engine's state lives, and the stores opened on it.

    root()          $BERTH_ROOT, default /var/lib/berth (images, layers, containers, berth.db)
    run_dir()       $BERTH_RUN, default /run/berth (runtime state, exit codes)
    engine()        the containers of that root, opened once per process
    image_store()   its ImageStore (which refuses to remove an image a container uses)
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from berth.engine.containers import Engine
    from berth.image.images import ImageStore

DEFAULT_ROOT = "/var/lib/berth"
DEFAULT_RUN = "/run/berth"


def root() -> str:
    return os.environ.get("BERTH_ROOT") or DEFAULT_ROOT


def image_store() -> ImageStore:
    """The image store of BERTH_ROOT, which knows which images containers use."""
    return engine().images


def run_dir() -> str:
    return os.environ.get("BERTH_RUN") or DEFAULT_RUN


_engines: dict[tuple[str, str], Engine] = {}


def engine() -> Engine:
    """The container engine of BERTH_ROOT and BERTH_RUN, opened once per process (its image
    store is the one `image_store()` returns, so rmi sees the containers)."""
    from berth.engine.containers import Engine

    key = (root(), run_dir())
    eng = _engines.get(key)
    if eng is None:
        eng = _engines[key] = Engine(*key)
        from berth.engine.boot import after_boot
        after_boot(eng)  # the first command after the machine booted restarts containers
    return eng
