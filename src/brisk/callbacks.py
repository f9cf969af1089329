"""Callbacks: ``Callback`` (the do-nothing base), ``History``, ``EarlyStopping``,
``ModelCheckpoint`` and ``ReduceLROnPlateau`` (Keras names and semantics)."""

from brisk.engine.callbacks import (
    Callback,
    CallbackList,
    EarlyStopping,
    History,
    ModelCheckpoint,
    ReduceLROnPlateau,
)

__all__ = [
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "History",
    "ModelCheckpoint",
    "ReduceLROnPlateau",
]
