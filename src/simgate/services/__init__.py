"""Use cases: each function takes a session (or a sessionmaker) and keyword arguments."""
