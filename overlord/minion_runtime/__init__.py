"""The minion's own runtime: what runs inside the sandbox, with the standard library and git only (the images copy this package alone)."""
