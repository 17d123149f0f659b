"""REST routers: ``v1`` (the app API), ``system`` (health, metrics) and, later, ``compat``."""
