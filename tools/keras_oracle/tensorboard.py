"""Keras oracle for brisk.callbacks.TensorBoard: what keras.callbacks.TensorBoard writes.

Run: KERAS_BACKEND=torch /tmp/kenv/bin/python tools/keras_oracle/tensorboard.py
(Keras 3.15.1 on torch; Keras's TensorBoard callback writes through tensorflow.summary, so
the scratch environment needs tensorflow-cpu as well as tensorboard.)

Fits a tiny model (10 samples, batch 4: 3 batches per epoch; 3 epochs; validation on 4
samples in batches of 2) with several TensorBoard settings, then reads the event files with
tensorboard's plugin_event_accumulator (which reads TF2 tensor summaries and legacy
simple_value scalars alike) and prints the layout, each tag's plugin, steps and values.
"""
import os
import sys

# This file's name shadows the tensorboard package when run as a script: drop its folder.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
os.environ.setdefault("KERAS_BACKEND", "torch")
import tempfile

import keras
import numpy as np
from tensorboard.backend.event_processing import plugin_event_accumulator as pea
from tensorboard.util import tensor_util

rs = np.random.RandomState(0)
X = rs.rand(10, 3).astype("float32")
Y = (rs.rand(10) > 0.5).astype("int64")


def read(d):
    out = {}
    for sub in sorted(os.listdir(d)):
        p = os.path.join(d, sub)
        if not os.path.isdir(p):
            out[sub] = "file"
            continue
        files = sorted(os.listdir(p))
        ea = pea.EventAccumulator(p, size_guidance={"tensors": 0})
        ea.Reload()
        tags = {}
        for tag in ea.Tags()["tensors"]:
            evs = ea.Tensors(tag)
            meta = ea.SummaryMetadata(tag)
            vals = []
            for e in evs:
                a = tensor_util.make_ndarray(e.tensor_proto)
                vals.append(round(float(a), 6) if a.ndim == 0 and a.dtype.kind == "f" else
                            f"array{a.shape}")
            tags[tag] = (meta.plugin_data.plugin_name, [e.step for e in evs], vals)
        out[sub] = (len(files), tags)
    return out


def run(name, fit_kwargs=None, evaluate=False, **tb_kwargs):
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    m.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    d = tempfile.mkdtemp()
    h = m.fit(X, Y, batch_size=4, epochs=3, verbose=0, validation_data=(X[:4], Y[:4]),
              validation_batch_size=2, callbacks=[keras.callbacks.TensorBoard(d, **tb_kwargs)],
              **(fit_kwargs or {}))
    if evaluate:  # a new TensorBoard on the same log_dir, in evaluate() after fit
        print("evaluate", m.evaluate(X, Y, batch_size=4, verbose=0,
                                     callbacks=[keras.callbacks.TensorBoard(d)]))
    print(f"== {name}: TensorBoard({', '.join(f'{k}={v!r}' for k, v in tb_kwargs.items())})")
    print("history", {k: [round(float(x), 6) for x in v] for k, v in h.history.items()})
    for sub, content in read(d).items():
        if content == "file":
            print(f"  {sub}: a file")
            continue
        n, tags = content
        print(f"  {sub}/: {n} event file(s)")
        for tag, (plugin, steps, vals) in sorted(tags.items()):
            print(f"    {tag!r} plugin={plugin} steps={steps} values={vals}")


run("default")
run("update_freq=2", update_freq=2)
run("update_freq=3", update_freq=3, write_graph=False)
run("steps per second, update_freq=3", update_freq=3, write_steps_per_second=True,
    write_graph=False)
run("update_freq=batch", update_freq="batch")
run("histogram_freq=2", histogram_freq=2, write_graph=False)
run("write_steps_per_second", write_steps_per_second=True, write_graph=False)
run("validation_freq=2", fit_kwargs={"validation_freq": 2}, write_graph=False)
run("evaluate after fit", evaluate=True, write_graph=False)
for bad in [dict(profile_batch=2), dict(embeddings_freq=1), dict(write_images=True)]:
    try:
        keras.callbacks.TensorBoard(tempfile.mkdtemp(), **bad)
        print("accepted at construction:", bad)
    except Exception as e:
        print("raised at construction:", bad, type(e).__name__, str(e)[:120])
