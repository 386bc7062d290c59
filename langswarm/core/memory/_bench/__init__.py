"""Load benchmark of the memory runtime: simulated agent traffic, measured.

``workload`` describes the traffic and generates it, ``engine`` runs it (on ``scratch``
storage) and records latencies and throughput with ``recording`` into the types of ``results``,
``report`` renders the result, ``progress`` shows a run live. The console
command ``langswarm-memory bench`` (``.._cli``) puts them together; from Python::

    from langswarm.core.memory._bench import Workload, run, format_table
    print(format_table(run(Workload(backend="sqlite", sessions=1_000, duration=10))))

Needs the ``bench`` extra (hdrhistogram, matplotlib, psutil).
"""

from .engine import BenchResult as BenchResult
from .engine import run as run
from .engine import run_workload as run_workload
from .report import format_table as format_table
from .report import to_dict as to_dict
from .report import write_json as write_json
from .report import write_plot as write_plot
from .workload import Workload as Workload
from .workload import WorkloadGenerator as WorkloadGenerator

__all__ = [
    "BenchResult",
    "Workload",
    "WorkloadGenerator",
    "format_table",
    "run",
    "run_workload",
    "to_dict",
    "write_json",
    "write_plot",
]
