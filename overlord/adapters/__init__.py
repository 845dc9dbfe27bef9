"""Adapters at the edge: git, the SQL state database, the commands Overlord starts, minion sandboxes. Everything here talks to something outside Python."""
