"""Property-based suites over the public memory API: every input either round-trips exactly or
is refused with ``MemoryValidationError``, next to another user's concurrent write."""
