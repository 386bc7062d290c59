"""Programs the tests run as separate processes (``python tests/children/<name>.py ...``)."""

from pathlib import Path

HERE = Path(__file__).resolve().parent


def script(name: str) -> str:
    """The path of child program ``name``."""
    return str(HERE / f"{name}.py")
