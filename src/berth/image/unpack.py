"""From an image to a container's root filesystem, as a plan: the image's unpacked layer
directories (bottom first, from ImageStore.layer_dirs) become the lowers of one overlay with the
container's own upper and work directories (store.snapshots). Nothing is mounted here;
store.mount performs the plan.

Raises: NoSuchImage, InvalidArgument (a bad snapshot key, too many layers).
"""

from __future__ import annotations

from berth.image.images import Image, ImageStore
from berth.store.snapshots import Mount, Snapshots

__all__ = ["prepare_rootfs", "view_rootfs"]


def prepare_rootfs(store: ImageStore, image: Image | str, key: str) -> list[Mount]:
    """The read-write snapshot `key` over `image` (an Image, or a reference or id)."""
    return Snapshots(store.root).prepare(key, store.layer_dirs(image))


def view_rootfs(store: ImageStore, image: Image | str, key: str) -> list[Mount]:
    """A read-only view of `image`'s root filesystem (for `export`, `cp` from an image)."""
    return Snapshots(store.root).view(key, store.layer_dirs(image))
