"""simgate: a self-hosted SMS gateway."""

from __future__ import annotations

__version__ = "0.1.0"
