"""Helpers shared by tests: databases on both backends, users with roles, API clients."""
