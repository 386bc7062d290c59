"""History-checking tests: several OS processes share one store, a checker judges their logs."""
