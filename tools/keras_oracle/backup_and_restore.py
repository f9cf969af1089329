"""Keras 3 BackupAndRestore semantics (oracle for tests/engine/test_resume.py).

Run: KERAS_BACKEND=torch /tmp/kenv/bin/python tools/keras_oracle/backup_and_restore.py
"""
import os; os.environ["KERAS_BACKEND"] = "torch"
import json, shutil, tempfile
import numpy as np, keras

print("keras", keras.__version__)
x = np.arange(100, dtype="float32").reshape(5, 20) / 100; y = np.zeros(5, "float32")


class Interrupt(keras.callbacks.Callback):
    def __init__(self, epoch=None, batch=None):
        self.e, self.b = epoch, batch
    def on_epoch_begin(self, epoch, logs=None):
        self.cur = epoch
        if epoch == self.e and self.b is None:
            raise RuntimeError("interrupt")
    def on_train_batch_begin(self, batch, logs=None):
        if self.b is not None and self.cur == self.e and batch == self.b:
            raise RuntimeError("interrupt")


class Seen(keras.callbacks.Callback):
    def on_train_begin(self, logs=None): self.epochs, self.batches = [], []
    def on_epoch_begin(self, epoch, logs=None): self.epochs.append(epoch)
    def on_train_batch_begin(self, batch, logs=None): self.batches.append((self.epochs[-1], batch))


def model():
    m = keras.Sequential([keras.Input((20,)), keras.layers.Dense(1)])
    m.compile(keras.optimizers.SGD(), loss="mse")
    return m


for save_freq, cut in (("epoch", dict(epoch=4)), (2, dict(epoch=2, batch=3))):
    d = tempfile.mkdtemp(); bdir = os.path.join(d, "backup")
    m = model()
    try:
        m.fit(x, y, epochs=10, batch_size=1, verbose=0, callbacks=[
            keras.callbacks.BackupAndRestore(bdir, save_freq=save_freq), Interrupt(**cut)])
    except RuntimeError:
        pass
    print(f"save_freq={save_freq!r} interrupted at {cut}: files", sorted(os.listdir(bdir)),
          "metadata", json.load(open(os.path.join(bdir, "training_metadata.json"))))
    seen = Seen()
    h = model().fit(x, y, epochs=10, batch_size=1, verbose=0, callbacks=[
        keras.callbacks.BackupAndRestore(bdir, save_freq=save_freq), seen])
    print("  resumed: epochs run", seen.epochs, "first batches", seen.batches[:3],
          "history.epoch", h.epoch, "len(loss)", len(h.history["loss"]),
          "backup dir exists after clean finish", os.path.exists(bdir))
    shutil.rmtree(d)

# EarlyStopping ends training: on_train_end still runs, so the backup is deleted
d = tempfile.mkdtemp(); bdir = os.path.join(d, "backup")
h = model().fit(x, y, epochs=10, batch_size=1, verbose=0, callbacks=[
    keras.callbacks.BackupAndRestore(bdir),
    keras.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=10.0)])
print("early stopped after", len(h.history["loss"]), "epochs; backup dir exists", os.path.exists(bdir))
# delete_checkpoint=False keeps it, holding the epoch count of the finished run
h = model().fit(x, y, epochs=3, batch_size=1, verbose=0, callbacks=[
    keras.callbacks.BackupAndRestore(bdir, delete_checkpoint=False)])
print("delete_checkpoint=False: files", sorted(os.listdir(bdir)),
      json.load(open(os.path.join(bdir, "training_metadata.json"))))
h = model().fit(x, y, epochs=3, batch_size=1, verbose=0, callbacks=[
    keras.callbacks.BackupAndRestore(bdir, delete_checkpoint=False)])
print("  a second fit(epochs=3) over that backup runs", len(h.history.get("loss", [])), "epochs")
shutil.rmtree(d)
