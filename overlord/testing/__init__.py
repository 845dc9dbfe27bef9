"""In-memory implementations of the ports (``overlord.ports``) for unit tests and benches.

They live in the package, not in ``tests/``, so that mypy checks them against the
Protocols exactly as it checks the real adapters, and so that benches can use them. Each
passes the same contract tests as the real implementations (``tests/test_contract_*.py``).
Nothing here imports infrastructure; none of it is used by Overlord itself.
"""
