"""Keras 3 oracle: fit(steps_per_epoch=, validation_steps=) on NumPy arrays.

KERAS_BACKEND=torch /tmp/kenv/bin/python tools/keras_oracle/steps.py
A zero Dense kernel with lr 0 makes each batch's MSE = mean(y**2), so the running-mean
batch logs reveal which batch was drawn.
"""
import numpy as np
import keras

y = np.arange(20, dtype="float32")[:, None]
x = np.zeros((20, 1), "float32")


class Rec(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.n, self.prev = 0, 0.0
        print("epoch", epoch)

    def on_train_batch_end(self, batch, logs=None):
        self.n += 1
        mean = logs["loss"]
        b = mean * self.n - self.prev * (self.n - 1)  # this batch's loss
        self.prev = mean
        print("  batch", batch, "loss", round(float(b), 3))

    def on_test_batch_end(self, batch, logs=None):
        print("  test batch", batch)

    def on_epoch_end(self, epoch, logs=None):
        print("  logs", {k: round(float(v), 3) for k, v in logs.items()})


def model():
    m = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False,
                                                                kernel_initializer="zeros")])
    m.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    return m


for spe in (3, 2):
    print("== steps_per_epoch", spe, "batch 4, 20 samples (5 batches), epochs 4")
    h = model().fit(x, y, batch_size=4, epochs=4, steps_per_epoch=spe, shuffle=False,
                    callbacks=[Rec()], verbose=0)
    print("epochs run", len(h.history["loss"]), h.params)

print("== steps_per_epoch 7 > 5 batches")
h = model().fit(x, y, batch_size=4, epochs=3, steps_per_epoch=7, shuffle=False,
                callbacks=[Rec()], verbose=0)
print("epochs run", len(h.history["loss"]))

print("== validation_steps 2 (validation 5 batches)")
h = model().fit(x, y, batch_size=4, epochs=2, validation_data=(x, y), validation_steps=2,
                shuffle=False, callbacks=[Rec()], verbose=0)
print(h.history)
print("== evaluate steps=2")
print(model().evaluate(x, y, batch_size=4, steps=2, verbose=0, callbacks=[Rec()]))
print("== predict steps=2")
print(model().predict(x, batch_size=4, steps=2, verbose=0).shape)

print("== steps_per_epoch 5 == 5 batches, epochs 3")
h = model().fit(x, y, batch_size=4, epochs=3, steps_per_epoch=5, shuffle=False,
                callbacks=[Rec()], verbose=0)
print(h.history)
print("== shuffle=True, steps_per_epoch 2 (passes reshuffled?)")
h = model().fit(x, y, batch_size=4, epochs=6, steps_per_epoch=2, shuffle=True,
                callbacks=[Rec()], verbose=0)
