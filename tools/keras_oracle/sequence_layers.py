"""Keras 3 oracle for brisk's sequence layers: Reshape, Conv1D, MaxPooling1D,
GlobalAveragePooling1D, Embedding, LSTM, GRU. Pinned in tests/keras_parity/test_sequence_layers.py.

Run: KERAS_BACKEND=torch /tmp/kenv/bin/python tools/keras_oracle/sequence_layers.py
Each model: output shapes, weights per layer, get_weights shapes, and predict() on a fixed
input after set_weights with arrays drawn from RandomState(0) (input first, then weights
in get_weights order, each randn * 0.5).
"""
import os; os.environ["KERAS_BACKEND"] = "torch"
import numpy as np, keras
from keras import layers as L

print("keras", keras.__version__)


def report(tag, m, x):
    print(f"== {tag}")
    print("shapes", [tuple(l.output.shape) for l in m.layers])
    print("params", [l.count_params() for l in m.layers], "count", m.count_params())
    print("weights", [tuple(w.shape) for w in m.get_weights()])
    rs = np.random.RandomState(1)
    m.set_weights([rs.randn(*w.shape).astype("float32") * 0.5 for w in m.get_weights()])
    np.set_printoptions(precision=6, suppress=True)
    print("out", np.round(m.predict(x, verbose=0), 6).tolist())


rs = np.random.RandomState(0)
ids = rs.randint(0, 20, size=(2, 6))
print("ids", ids.tolist())
seq = rs.randn(2, 5, 3).astype("float32")
img = rs.randn(2, 4, 3, 2).astype("float32")
flat = rs.randn(2, 12).astype("float32")

report("A embedding-lstm-dense",
       keras.Sequential([keras.Input((6,)), L.Embedding(20, 8), L.LSTM(6), L.Dense(3)]), ids)
report("B embedding-conv1d-pool-gap-dense",
       keras.Sequential([keras.Input((6,)), L.Embedding(20, 8),
                         L.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu"),
                         L.MaxPooling1D(2, padding="same"), L.GlobalAveragePooling1D(),
                         L.Dense(2)]), ids)
report("C gru-seq-gru",
       keras.Sequential([keras.Input((5, 3)), L.GRU(4, return_sequences=True),
                         L.GRU(3, use_bias=False)]), seq)
report("D conv1d-strides-same-valid-lstm-seq",
       keras.Sequential([keras.Input((5, 3)), L.Conv1D(4, 2, strides=2, padding="same"),
                         L.MaxPooling1D(pool_size=2, strides=1),
                         L.LSTM(2, return_sequences=True, use_bias=False),
                         L.Conv1D(3, 1, strides=1, use_bias=False)]), seq)
report("E image-reshape-conv1d-reshape-image",
       keras.Sequential([keras.Input((4, 3, 2)), L.Conv2D(3, 2), L.Reshape((-1, 3)),
                         L.Conv1D(4, 2, padding="same"), L.Reshape((3, 2, 4)),
                         L.Conv2D(2, (2, 1)), L.Reshape((8,)), L.Dense(1)]), img)
report("F flat-reshape-image",
       keras.Sequential([keras.Input((12,)), L.Reshape((2, 3, 2)), L.Conv2D(2, 1),
                         L.GlobalMaxPooling2D()]), flat)
report("G reshape-sequence",
       keras.Sequential([keras.Input((12,)), L.Reshape((4, -1)), L.GRU(2)]), flat)
report("H conv1d-valid-lstm-seq-dense",
       keras.Sequential([keras.Input((5, 3)), L.Conv1D(2, 3, strides=2),
                         L.LSTM(4, return_sequences=True, unit_forget_bias=False),
                         L.Dense(2, activation="softmax")]), seq)

# defaults and initializers Keras documents, checked here
lstm = L.LSTM(3); lstm.build((None, 5, 2))
print("lstm bias init", keras.ops.convert_to_numpy(lstm.cell.bias).tolist())
emb = L.Embedding(1000, 16); emb.build((None, 4))
e = keras.ops.convert_to_numpy(emb.embeddings)
print("embedding init range", float(e.min()), float(e.max()))
gru = L.GRU(3); gru.build((None, 5, 2))
print("gru bias shape", tuple(gru.cell.bias.shape), "reset_after", gru.cell.reset_after)
# Keras's behaviour on ids out of range (torch backend)
m = keras.Sequential([keras.Input((2,)), L.Embedding(5, 2)])
try:
    print("oob", m.predict(np.array([[1, 7]]), verbose=0).tolist())
except Exception as ex:  # noqa: BLE001
    print("oob raises", type(ex).__name__, str(ex)[:120])
