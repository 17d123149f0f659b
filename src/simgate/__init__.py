"""simgate: a self-hosted SMS gateway."""

from __future__ import annotations

import time

__version__ = "0.1.0"
# When this process started (``simgate inbox wait`` looks for SMS arriving after it).
STARTED_AT = time.time()
