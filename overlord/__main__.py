from overlord.cli.entry import entrypoint

entrypoint()
