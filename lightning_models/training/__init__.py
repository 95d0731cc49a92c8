"""The run: the CLI, ``run()``/``build()``, run folders, safe checkpoints, short errors, the registry; imports the core
and callbacks only."""
