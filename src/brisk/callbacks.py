"""Callbacks (Keras names and semantics): ``Callback`` (the do-nothing base), ``History``,
``EarlyStopping``, ``ModelCheckpoint``, ``ReduceLROnPlateau``, ``CSVLogger``,
``LearningRateScheduler``, ``TensorBoard``, ``TerminateOnNaN``, ``LambdaCallback`` and
``BackupAndRestore``."""

from brisk.engine.callbacks import (
    BackupAndRestore,
    Callback,
    CallbackList,
    CSVLogger,
    EarlyStopping,
    History,
    LambdaCallback,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
    TensorBoard,
    TerminateOnNaN,
)

__all__ = [
    "BackupAndRestore",
    "CSVLogger",
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "ReduceLROnPlateau",
    "TensorBoard",
    "TerminateOnNaN",
]
