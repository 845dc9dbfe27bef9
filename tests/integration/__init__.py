"""Integration tests: real git repositories, processes, Redis, PostgreSQL, Docker, workers."""
