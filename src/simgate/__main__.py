from __future__ import annotations

from simgate.cli import main

main()
