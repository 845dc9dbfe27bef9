from overlord.cli.app import entrypoint

entrypoint()
