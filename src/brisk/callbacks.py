"""Callbacks (``brisk.callbacks.Callback``, ``History``, ``EarlyStopping``, ...)."""

from brisk.engine.callbacks import *  # noqa: F403
from brisk.engine.callbacks import Callback, CallbackList, History  # noqa: F401
