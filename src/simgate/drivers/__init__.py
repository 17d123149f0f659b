"""Gateways: thin async loops around protocol code, all behind one small interface."""
