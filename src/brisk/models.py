"""Keras's ``keras.models``: ``Sequential``, ``load_model`` and ``clone_model``."""

from brisk.api.sequential import Sequential, clone_model, load_model

__all__ = ["Sequential", "clone_model", "load_model"]
