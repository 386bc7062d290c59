"""Open a SQLite backend held by a global and exit without closing it."""

import sys

import anyio

from langswarm.core.memory.backends.sqlite import SQLiteBackend

backend = SQLiteBackend(sys.argv[1])
anyio.run(backend.open, backend=sys.argv[2])
print("opened", flush=True)
