"""Keras 3 oracle: sparse categorical cross-entropy and accuracy per time step
(outputs (N, T, C), labels (N, T) or (N, T, 1)).

KERAS_BACKEND=torch /tmp/kenv/bin/python tools/keras_oracle/sequence_sparse_loss.py
"""
import numpy as np
import keras

m = keras.Sequential([keras.Input((4,)), keras.layers.Embedding(5, 3),
                      keras.layers.Dense(4, activation="softmax")])
ws = [np.sin(np.arange(np.prod(w.shape)) * 0.7 + i).reshape(w.shape).astype("float32")
      for i, w in enumerate(m.get_weights())]
m.set_weights(ws)
m.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
x = np.array([[0, 1, 2, 3], [4, 3, 2, 1], [1, 1, 0, 4]])
y = np.array([[0, 1, 2, 3], [3, 2, 1, 0], [1, 1, 1, 1]])
print(m.evaluate(x, y, verbose=0, return_dict=True))
print(m.evaluate(x, y[..., None], verbose=0, return_dict=True))
