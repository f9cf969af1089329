"""Keras 3.15.1 (KERAS_BACKEND=torch): a schedule object as learning_rate follows
optimizer.iterations over fit calls. Prints the rate after each of 16 steps (two fits of 8)
and the iteration count (tests/keras_parity/test_model_api.py pins them)."""

import keras
import numpy as np
from keras import layers

seen = []


class Rates(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        seen.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))


m = keras.Sequential([keras.Input((2,)), layers.Dense(1)])
decay = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5)
m.compile(optimizer=keras.optimizers.SGD(learning_rate=decay), loss="mse")
x = np.ones((8, 2), "float32")
y = np.zeros((8, 1), "float32")
m.fit(x, y, batch_size=2, epochs=2, verbose=0, callbacks=[Rates()])
m.fit(x, y, batch_size=2, epochs=2, verbose=0, callbacks=[Rates()])
print([round(v, 8) for v in seen])
print(int(m.optimizer.iterations))
