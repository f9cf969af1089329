import os; os.environ["KERAS_BACKEND"]="torch"
import numpy as np, keras
from keras import layers
rs = np.random.RandomState(0); data = (rs.rand(50, 4, 4, 3) * 255).astype("float32")
norm = layers.Normalization()
norm.adapt(data)
print("mean", np.asarray(norm.mean).ravel().round(5).tolist(), "var", np.asarray(norm.variance).ravel().round(4).tolist())
m = keras.Sequential([keras.Input((4, 4, 3)), norm, layers.Flatten(), layers.Dense(2)])
print("count", m.count_params(), [(w.path, tuple(w.shape), w.dtype) for w in m.layers[0].weights], len(m.non_trainable_weights))
x = data[:2]
print("out0", np.asarray(norm(x))[0, 0, 0].round(6).tolist())
n2 = layers.Normalization(mean=[1.0, 2.0], variance=[4.0, 0.0])
print("fixed", np.asarray(n2(np.array([[3.0, 2.0]], "float32"))).tolist())
n3 = layers.Normalization(axis=None); n3.adapt(np.array([[1., 2.], [3., 4.]], "float32")); print("axis None", np.asarray(n3(np.array([[1., 5.]], "float32"))).round(6).tolist())
