"""Immutable content and snapshots: containerd's role in berth.

    blobs.py    content-addressable blobs under <root>/blobs/sha256/<hex>
    layers.py   layer tar <-> directory, OCI whiteouts <-> overlayfs form, diff ids

Imports only berth.oci and berth.errors. Submodules are imported by name (nothing here), so
`import berth.store` stays cheap.
"""
