"""Keras 3.15.1 (torch backend): automatic layer names, clear_session, nested Sequential
(save/load, config, weights order, summary, trainable flags) and standalone layer calls.
Run: KERAS_BACKEND=torch /tmp/kenv/bin/python tools/keras_oracle/nested_and_names.py"""
import os

os.environ["KERAS_BACKEND"] = "torch"
import tempfile

import keras
import numpy as np
from keras import layers

# --- automatic names: snake_case class name, a per-session counter per prefix
keras.utils.clear_session()
a = keras.Sequential([keras.Input((4,)), layers.Dense(3), layers.BatchNormalization(),
                      layers.Dense(2, name="dense_7"), layers.Dense(1)])
print("names 1:", a.name, [layer.name for layer in a.layers])
b = keras.Sequential([keras.Input((8, 8, 3)), layers.Conv2D(2, 3), layers.Conv2D(2, 3),
                      layers.GlobalAveragePooling2D(), layers.Dense(1), layers.Dense(1, name="dense")])
print("names 2:", b.name, [layer.name for layer in b.layers])
print("more:", [c().name for c in (layers.LayerNormalization, layers.MaxPooling2D,
      layers.DepthwiseConv2D.__call__ and (lambda: layers.DepthwiseConv2D(3)),
      lambda: layers.SeparableConv2D(2, 3), lambda: layers.Conv1D(2, 3), lambda: layers.LSTM(2),
      lambda: layers.GRU(2), lambda: layers.Embedding(3, 2), layers.GlobalAveragePooling1D,
      lambda: layers.ZeroPadding2D(1), lambda: layers.Reshape((2,)), lambda: layers.Rescaling(1.0),
      lambda: layers.RandomFlip(), lambda: layers.Dropout(0.1), lambda: layers.Activation("relu"),
      layers.Flatten, layers.Normalization, lambda: layers.RandomRotation(0.1))])
try:
    keras.Sequential([keras.Input((2,)), layers.Dense(1, name="x"), layers.Dense(1, name="x")])
except Exception as e:
    print("duplicate names:", type(e).__name__, str(e)[:200])
keras.utils.clear_session()
print("after clear_session:", layers.Dense(1).name, keras.Sequential().name)
keras.backend.clear_session()
print("after backend.clear_session:", layers.Dense(1).name)

# --- nested Sequential
keras.utils.clear_session()
keras.utils.set_random_seed(0)
inner = keras.Sequential([layers.Dense(3), layers.BatchNormalization()])
outer = keras.Sequential([keras.Input((4,)), inner, layers.Dense(1)])
inner.layers[0].trainable = False
print("nested names:", outer.name, [layer.name for layer in outer.layers], [layer.name for layer in inner.layers])
print("nested weight shapes:", [w.shape for w in outer.get_weights()])
print("nested weights paths:", [w.path for w in outer.weights])
print("nested trainable count:", len(outer.trainable_weights), len(outer.non_trainable_weights))
outer.summary(line_length=120)
cfg = outer.get_config()
print("outer config layers:", [(c["class_name"], c["config"].get("name"), c["config"].get("trainable")) for c in cfg["layers"]])
icfg = cfg["layers"][1]["config"]
print("inner config keys:", sorted(icfg))
print("inner layer configs:", [(c["class_name"], c["config"]["name"], c["config"].get("trainable")) for c in icfg["layers"]])
x = np.arange(8, dtype="float32").reshape(2, 4) / 8
with tempfile.TemporaryDirectory() as d:
    p = os.path.join(d, "m.keras")
    outer.save(p)
    back = keras.models.load_model(p)
print("loaded names:", back.name, [layer.name for layer in back.layers], [layer.name for layer in back.layers[0].layers])
print("loaded trainable:", [layer.trainable for layer in back.layers[0].layers])
print("loaded same output:", np.allclose(back.predict(x, verbose=0), outer.predict(x, verbose=0)))
print("a new Dense after load:", layers.Dense(1).name)
clone = keras.models.clone_model(outer)
print("clone names:", clone.name, [layer.name for layer in clone.layers], [layer.name for layer in clone.layers[0].layers])
print("clone trainable:", [layer.trainable for layer in clone.layers[0].layers])
fc = keras.Sequential.from_config(cfg)
print("from_config names:", fc.name, [layer.name for layer in fc.layers])
print("from_config trainable:", [layer.trainable for layer in fc.layers[0].layers])
ws = outer.get_weights()
fc.set_weights(ws)
print("set_weights same output:", np.allclose(fc.predict(x, verbose=0), outer.predict(x, verbose=0)))
# pinned numbers: set every weight to a known value and read the output
keras.utils.clear_session()
inner = keras.Sequential([layers.Dense(3), layers.BatchNormalization()])
outer = keras.Sequential([keras.Input((4,)), inner, layers.Dense(1)])
vals = [np.arange(np.prod(w.shape), dtype="float32").reshape(w.shape) / 10 + 0.1 for w in outer.get_weights()]
outer.set_weights(vals)
print("pinned output:", outer.predict(x, verbose=0).ravel().tolist())

# --- standalone layers build on their first call
keras.utils.clear_session()
d = layers.Dense(4)
print("dense built before call:", d.built)
y = d(np.ones((2, 3), "float32"))
print("dense standalone:", d.built, tuple(y.shape), d.kernel.shape)
c = layers.Conv2D(5, 3)
y = c(np.ones((2, 8, 8, 3), "float32"))
print("conv standalone NHWC:", tuple(y.shape), c.kernel.shape)
ln = layers.LayerNormalization()
print("layernorm standalone:", tuple(ln(np.ones((2, 6), "float32")).shape))
e = layers.Embedding(10, 3)
print("embedding standalone:", tuple(e(np.array([[1, 2]])).shape))
lstm = layers.LSTM(5)
print("lstm standalone:", tuple(lstm(np.ones((2, 7, 3), "float32")).shape))
d2 = layers.Dense(2)
d2(np.ones((1, 3), "float32"))
k = d2.get_weights()[0].copy()
m = keras.Sequential([keras.Input((3,)), d2])
print("built layer keeps weights in a model:", np.array_equal(m.get_weights()[0], k))
try:
    d2(np.ones((1, 5), "float32"))
except Exception as ex:
    print("built Dense wrong input:", type(ex).__name__, str(ex)[:160])

# --- a loaded model keeps its names; a layer named anew may clash with them
keras.utils.clear_session()
m = keras.Sequential([keras.Input((3,)), layers.Dense(2)])
with tempfile.TemporaryDirectory() as d:
    p = os.path.join(d, "m.keras")
    m.save(p)
    keras.utils.clear_session()
    back = keras.models.load_model(p)
try:
    back.add(layers.Dense(1))
    print("add after load:", [layer.name for layer in back.layers])
except Exception as ex:
    print("add after load:", type(ex).__name__, str(ex)[:120])
try:
    keras.Sequential([keras.Input((3,)), d2, d2])
except Exception as ex:
    print("same layer twice:", type(ex).__name__, str(ex)[:120])

# --- a nested image model: weights set from a fixed pattern, output pinned
keras.utils.clear_session()
base = keras.Sequential([keras.Input((5, 5, 2)), layers.Conv2D(3, 3, padding="same"),
                         layers.BatchNormalization(), layers.MaxPooling2D()])
# (GlobalAveragePooling2D, not Flatten: brisk's Flatten keeps torch's NCHW order, so a
# Keras Dense kernel after Flatten does not transfer as it is)
top = keras.Sequential([keras.Input((5, 5, 2)), base, layers.GlobalAveragePooling2D(),
                        layers.Dense(2)])
print("image nested names:", top.name, [layer.name for layer in top.layers])
print("image nested weight shapes:", [w.shape for w in top.get_weights()])
top.set_weights([np.sin(np.arange(np.prod(w.shape), dtype="float32")).reshape(w.shape) * 0.5 + 1.0
                 if i in (3, 5) else np.sin(np.arange(np.prod(w.shape), dtype="float32")).reshape(w.shape)
                 for i, w in enumerate(top.get_weights())])
xi = np.cos(np.arange(2 * 5 * 5 * 2, dtype="float32")).reshape(2, 5, 5, 2)
print("image nested output:", top.predict(xi, verbose=0).tolist())
print("image nested summary rows:", [(layer.name, layer.output.shape if hasattr(layer, "output") else None, layer.count_params()) for layer in top.layers])
print("nested model called on its own (NHWC):", np.allclose(base.predict(xi, verbose=0), keras.ops.convert_to_numpy(base(xi))), tuple(base(xi).shape))
first = keras.Sequential([base, layers.Flatten(), layers.Dense(1)])
print("nested model as the first layer: input_shape", first.input_shape, "output_shape", first.output_shape)
