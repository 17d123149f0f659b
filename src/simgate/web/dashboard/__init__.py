"""Server-rendered pages for people: login, logout and the dashboard."""
