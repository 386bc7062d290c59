"""Redis storage: a server or a cluster (``redis+cluster://``), written by atomic scripts."""

from .backend import RedisBackend as RedisBackend

__all__ = ["RedisBackend"]
