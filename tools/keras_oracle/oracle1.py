import os; os.environ["KERAS_BACKEND"]="torch"
import numpy as np, keras
from keras import layers
print("keras", keras.__version__)
def seed(): keras.utils.set_random_seed(0)
# 1. freezing
seed()
m = keras.Sequential([keras.Input((4,)), layers.Dense(8), layers.BatchNormalization(), layers.Dense(1)])
print("params total", m.count_params(), "trainable", sum(np.prod(w.shape) for w in m.trainable_weights),
      "nontrain", sum(np.prod(w.shape) for w in m.non_trainable_weights))
m.layers[0].trainable = False
print("dense0 frozen: trainable", sum(np.prod(w.shape) for w in m.trainable_weights),
      "nontrain", sum(np.prod(w.shape) for w in m.non_trainable_weights))
m.trainable = False
print("model frozen: trainable", len(m.trainable_weights), "nontrain", len(m.non_trainable_weights))
m.layers[0].trainable = True
print("model False then layer0 True: n trainable weights", len(m.trainable_weights), "layer0 trainable wts", len(m.layers[0].trainable_weights), "model.trainable", m.trainable)
m.trainable = True
print("model True again:", [l.trainable for l in m.layers], len(m.trainable_weights))
# nested
seed()
inner = keras.Sequential([layers.Dense(3), layers.BatchNormalization()])
outer = keras.Sequential([keras.Input((4,)), inner, layers.Dense(1)])
inner.trainable = False
print("nested inner frozen: trainable", sum(np.prod(w.shape) for w in outer.trainable_weights), "nontrain", sum(np.prod(w.shape) for w in outer.non_trainable_weights), [l.trainable for l in inner.layers])
# fit with frozen BN: moving stats unchanged? weights unchanged?
seed()
x = np.random.RandomState(0).randn(64, 4).astype("float32"); y = np.random.RandomState(1).randn(64, 1).astype("float32")
m = keras.Sequential([keras.Input((4,)), layers.Dense(8), layers.BatchNormalization(), layers.Dense(1)])
m.compile("sgd", "mse")
m.layers[1].trainable = False
bn_before = [w.numpy().copy() for w in m.layers[1].weights]
d0 = m.layers[0].get_weights()[0].copy()
m.fit(x, y, epochs=1, batch_size=16, verbose=0)
print("frozen BN after compile weights unchanged:", all(np.array_equal(a, w.numpy()) for a, w in zip(bn_before, m.layers[1].weights)), "dense0 changed", not np.array_equal(d0, m.layers[0].get_weights()[0]))
m.layers[1].trainable = True
m.compile("sgd","mse")
m.fit(x, y, epochs=1, batch_size=16, verbose=0)
print("unfrozen after compile -> BN changed:", not all(np.array_equal(a, w.numpy()) for a, w in zip(bn_before, m.layers[1].weights)))
# BN frozen inference mode in training call
bn = layers.BatchNormalization(); bn.build((None, 4)); bn.trainable=False
xb = np.random.RandomState(2).randn(8, 4).astype("float32")*3+1
out = keras.ops.convert_to_numpy(bn(xb, training=True))
print("frozen BN training=True == x/sqrt(1+eps):", np.allclose(out, xb/np.sqrt(1+1e-3), atol=1e-6))
# 2. custom loss order
seed()
def asym(y_true, y_pred):
    return keras.ops.mean(keras.ops.square(y_pred) * (y_true + 1.0), axis=-1)
m = keras.Sequential([keras.Input((2,)), layers.Dense(1, kernel_initializer="ones", bias_initializer="zeros")])
m.compile("sgd", loss=asym)
xa = np.array([[1., 2.], [3., -1.]], "float32"); ya = np.array([[0.5], [2.0]], "float32")
print("asym loss evaluate", m.evaluate(xa, ya, verbose=0))
# 3. accuracy from shapes
rs = np.random.RandomState(0)
xs = rs.randn(200, 5).astype("float32"); ys = (xs[:, 0] + 0.3 * rs.randn(200) > 0).astype("float32")
seed()
m = keras.Sequential([keras.Input((5,)), layers.Dense(1, activation="sigmoid")])
m.compile("sgd", "mse", metrics=["accuracy"])
r = m.evaluate(xs, ys, verbose=0, return_dict=True)
p = m.predict(xs, verbose=0)
print("sigmoid+mse acc", r, "threshold predict", ((p[:, 0] > 0.5) == (ys > 0.5)).mean(), "frac0", (ys == 0).mean())
print(m.metrics[-1].metrics if hasattr(m.metrics[-1], "metrics") else m.metrics)
seed()
m = keras.Sequential([keras.Input((5,)), layers.Dense(3, activation="softmax")])
m.compile("sgd", "mse", metrics=["accuracy"])
yl = rs.randint(0, 3, 200); yoh = np.eye(3, dtype="float32")[yl]
r = m.evaluate(xs, yoh, verbose=0, return_dict=True)
p = m.predict(xs, verbose=0)
print("softmax+mse onehot acc", r, "argmax", (p.argmax(1) == yl).mean())
m.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
r = m.evaluate(xs, yl, verbose=0, return_dict=True); print("sparse acc", r, (p.argmax(1) == yl).mean())
r = m.evaluate(xs, yl[:, None], verbose=0, return_dict=True); print("sparse acc (N,1) labels", r)
print([type(mm).__name__ for mm in m.metrics], [type(x).__name__ for x in getattr(m.metrics[-1], "_user_metrics", [])] )
# 4. early stopping epochs
for p in (0, 1, 2, 3):
    class Fake(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = [1.0, 0.5, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4][epoch]
    seed()
    m = keras.Sequential([keras.Input((5,)), layers.Dense(1)]); m.compile("sgd", "mse")
    h = m.fit(xs, ys, epochs=10, verbose=0, callbacks=[Fake(), keras.callbacks.EarlyStopping(patience=p)])
    print("earlystop patience", p, "epochs run", len(h.history["loss"]))
# 6. uint8 raw
m = keras.Sequential([keras.Input((3,)), layers.Dense(1, kernel_initializer="ones", bias_initializer="zeros")])
xu = np.array([[255, 0, 1], [10, 20, 30]], dtype="uint8")
print("uint8 predict", m.predict(xu, verbose=0).ravel())
m2 = keras.Sequential([keras.Input((3,)), layers.Rescaling(1/255), layers.Dense(1, kernel_initializer="ones", bias_initializer="zeros")])
print("uint8 rescaled predict", m2.predict(xu, verbose=0).ravel())
