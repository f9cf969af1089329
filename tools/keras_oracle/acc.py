import os; os.environ["KERAS_BACKEND"]="torch"
import numpy as np, keras
from keras import layers
np.set_printoptions(precision=8, floatmode="unique")
rs = np.random.RandomState(0)
xs = rs.randn(200, 5).astype("float32"); ys = (xs[:, 0] + 0.3 * rs.randn(200) > 0).astype("float32")
W1 = np.array([[0.3], [-0.2], [0.1], [0.5], [-0.4]], "float32"); b1 = np.array([0.05], "float32")
m = keras.Sequential([keras.Input((5,)), layers.Dense(1, activation="sigmoid")])
m.set_weights([W1, b1]); m.compile("sgd", "mse", metrics=["accuracy"])
print("binary", m.evaluate(xs, ys, verbose=0, return_dict=True))
print("binary (N,1) labels", m.evaluate(xs, ys[:, None], verbose=0, return_dict=True))
W3 = np.array([[0.3, -0.1, 0.2], [-0.2, 0.4, 0.0], [0.1, 0.1, -0.3], [0.5, -0.5, 0.2], [-0.4, 0.2, 0.1]], "float32"); b3 = np.zeros(3, "float32")
yl = rs.randint(0, 3, 200); yoh = np.eye(3, dtype="float32")[yl]
m = keras.Sequential([keras.Input((5,)), layers.Dense(3, activation="softmax")])
m.set_weights([W3, b3]); m.compile("sgd", "mse", metrics=["accuracy"])
print("softmax mse onehot", m.evaluate(xs, yoh, verbose=0, return_dict=True))
m.compile("sgd", "binary_crossentropy", metrics=["accuracy"])
print("softmax bce onehot (categorical acc)", m.evaluate(xs, yoh, verbose=0, return_dict=True))
m.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
print("sparse", m.evaluate(xs, yl, verbose=0, return_dict=True))
# CCE from unnormalised probabilities
print("cce unnorm", float(keras.losses.CategoricalCrossentropy()(np.array([[0., 1., 0.]]), np.array([[0.2, 0.2, 0.2]]))))
print("scce unnorm", float(keras.losses.SparseCategoricalCrossentropy()(np.array([1]), np.array([[0.2, 0.2, 0.2]]))))
print("cce clip 1-eps", float(keras.losses.CategoricalCrossentropy()(np.array([[0., 1.]]), np.array([[0., 1.]]))))
