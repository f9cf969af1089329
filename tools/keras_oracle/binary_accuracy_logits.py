"""Keras 3 oracle: metrics=["accuracy"] with BinaryCrossentropy(from_logits=True) on a model
that outputs logits: the accuracy thresholds the raw output at 0.5.

KERAS_BACKEND=torch /tmp/kenv/bin/python tools/keras_oracle/binary_accuracy_logits.py
"""
import numpy as np
import keras

x = np.array([[0.2], [0.7], [-0.3], [1.5]], "float32")
y = np.array([1, 1, 0, 1], "float32")
m = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False,
                                                            kernel_initializer="ones")])
m.compile(loss=keras.losses.BinaryCrossentropy(from_logits=True), metrics=["accuracy"])
print(m.evaluate(x, y, verbose=0, return_dict=True))
