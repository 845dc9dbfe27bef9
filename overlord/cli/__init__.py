"""The ``overlord`` command line (typer). Commands stay thin: parse, call the core, print."""
