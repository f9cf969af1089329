import os; os.environ["KERAS_BACKEND"]="torch"
import numpy as np, keras
from keras import layers
m = keras.Sequential([keras.Input((7, 6, 3)), layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same"), layers.SeparableConv2D(4, 3, strides=2, depth_multiplier=2, activation="relu"), layers.GlobalAveragePooling2D()])
print([tuple(l.output.shape) for l in m.layers], "count", m.count_params(), [tuple(w.shape) for w in m.get_weights()])
rs = np.random.RandomState(0); x = rs.randn(2, 7, 6, 3).astype("float32")
m.set_weights([rs.randn(*w.shape).astype("float32") * 0.5 for w in m.get_weights()])
print("out", m.predict(x, verbose=0).round(6).tolist())
