"""The async request path; ``scripts/unasync.py`` generates ``_sync`` from it."""
