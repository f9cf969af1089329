"""Optimizers (``registry``: Keras-style specs over torch.optim) and learning-rate
schedules (``schedules``: pure ``step -> multiplier`` functions).

Example::

    from brisk.optim import Adam, cosine, warmup
    opt = Adam(learning_rate=1e-3).build(net)
    sched = warmup(cosine(900), warmup_steps=100)
"""

from brisk.optim.registry import (
    GD,
    OPTIMIZERS,
    SGD,
    Adadelta,
    Adagrad,
    Adam,
    AdamW,
    CombinedOptimizer,
    Momentum,
    Muon,
    Nadam,
    OptimizerSpec,
    RMSprop,
    ScheduleFreeAdamW,
    ScheduleFreeSGD,
    get,
    get_optimizer,
    param_groups,
    resolve,
)
from brisk.optim.schedules import (
    SCHEDULES,
    Schedule,
    constant,
    cosine,
    exponential,
    get_schedule,
    inverse_sqrt,
    linear,
    one_cycle,
    polynomial,
    step_decay,
    warmup,
)

__all__ = [
    "GD",
    "OPTIMIZERS",
    "SCHEDULES",
    "SGD",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "CombinedOptimizer",
    "Momentum",
    "Muon",
    "Nadam",
    "OptimizerSpec",
    "RMSprop",
    "Schedule",
    "ScheduleFreeAdamW",
    "ScheduleFreeSGD",
    "constant",
    "cosine",
    "exponential",
    "get",
    "get_optimizer",
    "get_schedule",
    "inverse_sqrt",
    "linear",
    "one_cycle",
    "param_groups",
    "polynomial",
    "resolve",
    "step_decay",
    "warmup",
]
