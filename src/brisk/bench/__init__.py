"""Time-to-accuracy benchmarks of the recipes (behind ``brisk bench RECIPE``).

Example::

    import brisk.bench
    report = brisk.bench.run("mnist-cnn", runs=5, out="bench-out")
    report["summary"]["time_to_target"]        # {'n': 5, 'mean': ..., 'std': ..., ...}
"""

from brisk.bench.runner import environment, markdown, plot, run, spread, write
from brisk.bench.timing import TimeToAccuracy

__all__ = ["TimeToAccuracy", "environment", "markdown", "plot", "run", "spread", "write"]
