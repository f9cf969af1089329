"""Keras 3 oracle: model(x, training=True/False) for Dropout and BatchNormalization.

KERAS_BACKEND=torch /tmp/kenv/bin/python tools/keras_oracle/call_training.py
"""
import numpy as np
import keras

x = np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 4.0]], "float32")
m = keras.Sequential([keras.Input((2,)), keras.layers.BatchNormalization()])
print("training=True:", np.round(np.asarray(m(x, training=True).detach()), 5).tolist())
print("training=False:", np.round(np.asarray(m(x, training=False).detach()), 5).tolist())
print("moving_mean after:", np.round(m.layers[0].moving_mean.numpy(), 5).tolist())
