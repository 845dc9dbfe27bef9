"""Unit tests: the pure core and the in-memory ports, no git repository, process or service."""
