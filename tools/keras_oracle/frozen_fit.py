"""Keras 3 oracle: fit a model with no trainable weights.

KERAS_BACKEND=torch /tmp/kenv/bin/python tools/keras_oracle/frozen_fit.py
"""
import warnings

import numpy as np
import keras

x = np.random.RandomState(0).normal(size=(16, 3)).astype("float32")
y = np.random.RandomState(1).normal(size=(16, 2)).astype("float32")
m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.BatchNormalization()])
m.trainable = False
m.compile(optimizer="adam", loss="mse")
before = [w.copy() for w in m.get_weights()]
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    h = m.fit(x, y, epochs=2, batch_size=8, verbose=0)
print("warnings:", [str(i.message) for i in w])
print("history:", h.history)
print("unchanged:", all(np.array_equal(a, b) for a, b in zip(before, m.get_weights())))
