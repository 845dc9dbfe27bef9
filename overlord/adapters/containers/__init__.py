"""Minion sandboxes (``ports.MinionBackend``): the Docker backend, the process backend, the model relay, the clone and reading results back."""
