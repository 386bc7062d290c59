"""Child processes for the multi-process tests, run as ``python -m tests.multiprocess.<name>``."""
