"""Keras 3.15.1 (torch backend) values pinned by tests/engine/test_callbacks_exact.py.

    KERAS_BACKEND=torch /tmp/kenv/bin/python tools/keras_oracle/callbacks_exact.py
"""
import os; os.environ["KERAS_BACKEND"] = "torch"
import io, contextlib, tempfile
import numpy as np, keras
from keras import layers

rs = np.random.RandomState(0); X = rs.rand(8, 3).astype("float32"); Y = rs.rand(8, 2).astype("float32")


def model():
    m = keras.Sequential([keras.Input((3,)), layers.Dense(2)]); m.compile("sgd", "mse")
    return m


def es_run(vals, **kw):
    class S(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None): logs["val_loss"] = vals[epoch]
    es = keras.callbacks.EarlyStopping(**kw)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        h = model().fit(X, Y, epochs=len(vals), verbose=0, callbacks=[S(), es])
    return len(h.history["loss"]), es.stopped_epoch, es.best, es.best_epoch, es.wait, out.getvalue()


# the wait restarts once the baseline is beaten (patience counted from there)
print("baseline beaten at epoch 0", es_run([1.0, 1.2, 1.3, 1.4, 1.5], patience=2, baseline=1.5))
# improvements that do not beat the baseline keep counting
print("baseline never beaten", es_run([3.0, 2.0, 2.5, 2.6, 2.7, 2.8], patience=3, baseline=1.5))
# stopped at epoch 1 with verbose=1
print("stop at epoch 1 verbose", es_run([1.0, 2.0, 3.0], patience=1, verbose=1))
print("no stop verbose", es_run([3.0, 2.0, 1.0], patience=1, verbose=1))
es = keras.callbacks.EarlyStopping(); es.on_train_begin()
print("defaults", es.verbose, es.best_epoch, es.wait, es.stopped_epoch)
# LearningRateScheduler: verbose message, lr passed to the schedule
out = io.StringIO()
with contextlib.redirect_stdout(out):
    h = model().fit(X, Y, epochs=3, verbose=0, callbacks=[
        keras.callbacks.LearningRateScheduler(lambda e, lr: lr * 0.5, verbose=1)])
print("lrs", h.history["learning_rate"], repr(out.getvalue()))
print("lrs default verbose", keras.callbacks.LearningRateScheduler(lambda e: 0.1).verbose)
# CSVLogger: the exact text (lineterminator, NA columns, separator)
d = tempfile.mkdtemp(); f = os.path.join(d, "log.csv")
class Fixed(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        logs.clear(); logs.update({"loss": 0.5 + epoch, "b": 2.25})
model().fit(X, Y, epochs=2, verbose=0, callbacks=[Fixed(), keras.callbacks.CSVLogger(f, separator=";")])
print("csv", repr(open(f, newline="").read()))
print("csv default append", keras.callbacks.CSVLogger(f).append)
tb = keras.callbacks.TensorBoard()
print("tensorboard defaults", tb.log_dir, tb.write_graph)
# TerminateOnNaN message
cb = keras.callbacks.TerminateOnNaN(raise_error=True) if "raise_error" in keras.callbacks.TerminateOnNaN.__init__.__code__.co_varnames else None
if cb is not None:
    try:
        cb.on_batch_end(3, {"loss": float("nan")})
    except RuntimeError as e:
        print("ton raise", repr(str(e)))
cb = keras.callbacks.TerminateOnNaN(); cb.set_model(model())
out = io.StringIO()
with contextlib.redirect_stdout(out):
    cb.on_batch_end(3, {"loss": float("inf")})
print("ton print", repr(out.getvalue()))
