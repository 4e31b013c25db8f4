"""Where the engine's state lives, and the stores opened on it.

    root()          $BERTH_ROOT, default /var/lib/berth (images, layers, containers, berth.db)
    image_store()   the ImageStore of that root, opened once per process
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from berth.image.images import ImageStore

DEFAULT_ROOT = "/var/lib/berth"
_stores: dict[str, ImageStore] = {}


def root() -> str:
    return os.environ.get("BERTH_ROOT") or DEFAULT_ROOT


def image_store() -> ImageStore:
    from berth.image.images import ImageStore
    path = root()
    store = _stores.get(path)
    if store is None:
        store = _stores[path] = ImageStore(path)
    return store
