"""The sync request path, generated from ``_async`` by ``scripts/unasync.py``."""
