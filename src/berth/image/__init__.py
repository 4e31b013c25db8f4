"""Images on top of the store: records, tags, history, inspect (images.py), the overlay plan of
a container's root filesystem (unpack.py), save/load (archive.py).

Nothing is re-exported here, so `import berth.image.x` loads only what x needs.
"""
