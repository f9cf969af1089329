import os; os.environ["KERAS_BACKEND"]="torch"
import numpy as np, keras
from keras import layers
m = keras.Sequential([keras.Input((6, 5, 2)), layers.ZeroPadding2D(((1, 2), (0, 3))), layers.Conv2D(4, 3), layers.LayerNormalization(), layers.GlobalMaxPooling2D(), layers.Dense(3), layers.LayerNormalization()])
print([tuple(l.output.shape) if hasattr(l, "output") else None for l in m.layers])
print("count", m.count_params(), [int(np.prod(w.shape)) for w in m.weights])
rs = np.random.RandomState(0); x = rs.randn(2, 6, 5, 2).astype("float32")
ws = [rs.randn(*w.shape).astype("float32") * 0.5 for w in m.get_weights()]
m.set_weights(ws); np.save("/tmp/kx/layers_ws.npy", np.array(ws, dtype=object), allow_pickle=True)
print("out", m.predict(x, verbose=0).round(6).tolist())
np.save("/tmp/kx/layers_x.npy", x)
