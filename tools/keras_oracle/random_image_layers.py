# Keras 3.15.1, torch backend: RandomRotation, RandomTranslation, RandomZoom with ranges of
# width 0 (deterministic geometry) on a 6x5 arange image; prints the values pinned in
# tests/keras_parity/test_random_image_layers.py. Run:
#   KERAS_BACKEND=torch /tmp/kenv/bin/python tools/keras_oracle/random_image_layers.py
import os; os.environ["KERAS_BACKEND"] = "torch"
import json
import numpy as np, keras
from keras import layers

x = np.arange(30, dtype="float32").reshape(1, 6, 5, 1)  # (N, H, W, C): rows of 5
CASES = {
    "rot90": lambda **k: layers.RandomRotation((0.25, 0.25), **k),
    "rot-36": lambda **k: layers.RandomRotation((-0.1, -0.1), **k),
    "tr": lambda **k: layers.RandomTranslation((0.25, 0.25), (-0.3, -0.3), **k),
    "zoom_out": lambda **k: layers.RandomZoom((0.5, 0.5), **k),
    "zoom_hw": lambda **k: layers.RandomZoom((-0.5, -0.5), (0.4, 0.4), **k),
}
out = {}
for name, make in CASES.items():
    for fill in ("reflect", "wrap", "constant", "nearest"):
        for interp in ("bilinear", "nearest"):
            layer = make(fill_mode=fill, interpolation=interp, fill_value=-1.0, seed=1)
            y = np.asarray(layer(x, training=True))
            out[f"{name}/{fill}/{interp}"] = y[0, :, :, 0].round(5).tolist()
print(json.dumps(out))
for make in CASES.values():
    m = keras.Sequential([keras.Input((6, 5, 1)), make()])
    print("shape", m.output_shape, "count", m.count_params(),
          "inference identity", bool((np.asarray(m(x, training=False)) == x).all()),
          "dtype", np.asarray(m(x.astype("uint8"), training=False)).dtype)
for bad in (lambda: layers.RandomRotation(1.5), lambda: layers.RandomZoom(-1.0),
            lambda: layers.RandomTranslation(0.1, 1.2), lambda: layers.RandomRotation(0.1, fill_mode="mirror"),
            lambda: layers.RandomZoom(0.1, interpolation="bicubic")):
    try:
        bad(); print("accepted")
    except Exception as e:
        print(type(e).__name__, str(e)[:100])
print("config", layers.RandomRotation(0.2).get_config()["factor"], layers.RandomZoom(-0.2).height_lower)
