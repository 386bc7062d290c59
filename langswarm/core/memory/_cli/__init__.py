"""The ``langswarm-memory`` console command: look into stores (``sessions``, ``stats``),
move them (``export``, ``import``, ``migrate``), clear them out (``cleanup``), check them
(``doctor``) and load-benchmark the runtime (``bench``). ``docs/cli.md`` is the manual."""

from ._app import main as main
from .bench import build_parser as build_parser

__all__ = ["build_parser", "main"]
