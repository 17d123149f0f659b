"""HTTP: the app factory, API routers, middleware and (later) the dashboard."""
