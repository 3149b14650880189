"""The artifact manifest, read and written by the device runtime (``grw_edge_runtime``)."""
from grw_edge_runtime.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    MODES,
    Manifest,
    StateEntry,
    read_manifest,
)

__all__ = ["FORMAT_VERSION", "MANIFEST_NAME", "MODES", "Manifest", "StateEntry", "read_manifest"]
