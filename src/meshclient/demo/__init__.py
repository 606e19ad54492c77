"""The meshclient demo: a small local mesh, the same traffic through httpx and meshclient.

Run it with ``python -m meshclient.demo`` (or ``nox -s demo``); ``--help`` lists the options.
Everything runs on 127.0.0.1 and stops when the run ends, also on Ctrl-C.
"""

from __future__ import annotations

from ._app import main

__all__ = ["main"]
