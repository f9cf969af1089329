"""Callbacks (Keras names and semantics): ``Callback`` (the do-nothing base), ``History``,
``EarlyStopping``, ``ModelCheckpoint``, ``ReduceLROnPlateau``, ``CSVLogger``,
``LearningRateScheduler``, ``TerminateOnNaN`` and ``LambdaCallback``."""

from brisk.engine.callbacks import (
    Callback,
    CallbackList,
    CSVLogger,
    EarlyStopping,
    History,
    LambdaCallback,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
    TerminateOnNaN,
)

__all__ = [
    "CSVLogger",
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "ReduceLROnPlateau",
    "TerminateOnNaN",
]
