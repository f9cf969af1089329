import os; os.environ["KERAS_BACKEND"]="torch"
import numpy as np, keras, tempfile, glob
from keras import layers
rs=np.random.RandomState(0); X=rs.rand(32,3).astype("float32"); Y=rs.rand(32,2).astype("float32")
def run(vals, **kw):
    class S(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None): logs["val_loss"] = vals[epoch]
    m = keras.Sequential([keras.Input((3,)), layers.Dense(2)]); m.compile("sgd","mse")
    es = keras.callbacks.EarlyStopping(**kw)
    h = m.fit(X, Y, epochs=len(vals), verbose=0, callbacks=[S(), es])
    return len(h.history["loss"]), es.stopped_epoch, es.best, es.best_epoch
print("baseline", run([3.0, 2.5, 2.2, 2.1, 2.0, 1.0], patience=2, baseline=1.5))
print("baseline met", run([3.0, 1.4, 1.3, 1.35, 1.36, 1.37], patience=1, baseline=1.5))
print("start_from_epoch", run([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], patience=1, start_from_epoch=3))
d = tempfile.mkdtemp()
class S2(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None): logs["val_loss"] = [3.0, 2.0, 2.5, 1.0][epoch]
m = keras.Sequential([keras.Input((3,)), layers.Dense(2)]); m.compile("sgd","mse")
m.fit(X, Y, epochs=4, batch_size=8, verbose=0, callbacks=[S2(), keras.callbacks.ModelCheckpoint(os.path.join(d, "m{epoch}.keras"), save_best_only=True, initial_value_threshold=2.2)])
print("initial_value_threshold saves", sorted(os.path.basename(p) for p in glob.glob(d + "/*")))
d = tempfile.mkdtemp()
m.fit(X, Y, epochs=2, batch_size=8, verbose=0, callbacks=[keras.callbacks.ModelCheckpoint(os.path.join(d, "m{epoch}-{batch}.keras"), save_freq=3)])
print("save_freq=3 (4 batches/epoch, 2 epochs)", sorted(os.path.basename(p) for p in glob.glob(d + "/*")))
