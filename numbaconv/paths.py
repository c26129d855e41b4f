"""Where numbaconv keeps files of its own: one cache root, and the folders under it."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "NUMBACONV_CACHE_DIR"


def cache_root() -> Path:
    """``$NUMBACONV_CACHE_DIR``, else ``$XDG_CACHE_HOME/numbaconv``, else ``~/.cache/numbaconv``:
    generated kernels (``kernels/``), Numba's compiled code (``numba/``, when it is not kept
    beside the package) and tuned configs (``configs/``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "numbaconv"
