"""On-device metrics (``brisk.metrics.get('accuracy')``)."""

from brisk.api.metrics import *  # noqa: F403
from brisk.api.metrics import METRICS, Metric, get  # noqa: F401
