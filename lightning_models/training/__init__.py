"""The run: the Trainer and its command line, run folders and their records, checkpoints read safely, short errors,
``run()``/``build()``, the experiments registry. Imports the core (the package's top-level modules) and callbacks only."""
