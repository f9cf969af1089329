"""Keras 3 oracle: evaluate's default batch size (32) shows in a reduction='sum' loss, and
fit's validation uses fit's batch_size.

KERAS_BACKEND=torch /tmp/kenv/bin/python tools/keras_oracle/evaluate_batch.py
"""
import numpy as np
import keras

x = np.cos(np.arange(40 * 3) * 0.3).reshape(40, 3).astype("float32")
y = np.arange(40) % 3
m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, activation="softmax")])
m.set_weights([np.sin(np.arange(9) * 0.5).reshape(3, 3).astype("float32"), np.zeros(3, "float32")])
m.compile(optimizer=keras.optimizers.SGD(0.0),
          loss=keras.losses.SparseCategoricalCrossentropy(reduction="sum"))
print("evaluate default:", m.evaluate(x, y, verbose=0))
print("evaluate batch 40:", m.evaluate(x, y, batch_size=40, verbose=0))
h = m.fit(x, y, batch_size=10, epochs=1, validation_data=(x, y), verbose=0, shuffle=False)
print("val_loss with fit batch 10:", h.history["val_loss"])
