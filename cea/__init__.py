"""The ``cea`` command line: a thin layer that wires the engine (and later the ledger, gateway
and simulators) to commands a user runs. See ``cea --help``."""
