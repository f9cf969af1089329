"""Keras 3 oracle: Flatten after image layers reads (H, W, C).

KERAS_BACKEND=torch /tmp/kenv/bin/python tools/keras_oracle/flatten_order.py
"""
import numpy as np
import keras

x = np.arange(8, dtype="float32").reshape(1, 2, 2, 2)
m = keras.Sequential([keras.Input((2, 2, 2)), keras.layers.MaxPooling2D(1), keras.layers.Flatten()])
print("pool+flatten:", m.predict(x, verbose=0).tolist())
m = keras.Sequential([keras.Input((2, 2, 2)), keras.layers.Flatten()])
print("flatten only:", m.predict(x, verbose=0).tolist())
m = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.Conv2D(3, 2), keras.layers.Flatten(),
                      keras.layers.Dense(2)])
ws = [np.sin(np.arange(np.prod(w.shape)) * 0.37 + i).reshape(w.shape).astype("float32")
      for i, w in enumerate(m.get_weights())]
m.set_weights(ws)
xi = np.cos(np.arange(2 * 4 * 4 * 2) * 0.11).reshape(2, 4, 4, 2).astype("float32")
print("conv+flatten+dense:", np.round(m.predict(xi, verbose=0), 6).tolist())
