"""Commands Overlord starts (a project's test command, a process minion): their own session, killed with the worker."""
