import os; os.environ["KERAS_BACKEND"]="torch"
import numpy as np, keras
from keras import layers
inner = keras.Sequential([layers.Dense(3), layers.BatchNormalization()])
outer = keras.Sequential([keras.Input((4,)), inner, layers.Dense(1)])
inner.trainable = False
inner.layers[0].trainable = True
tw = sum(int(np.prod(w.shape)) for w in outer.trainable_weights); nw = sum(int(np.prod(w.shape)) for w in outer.non_trainable_weights)
print("nested re-enabled: trainable", tw, "non-trainable", nw)
outer.compile("sgd", "mse"); k0 = inner.layers[0].get_weights()[0].copy()
outer.fit(np.ones((8, 4), "float32"), np.zeros((8, 1), "float32"), verbose=0)
print("inner dense changed", not np.array_equal(k0, inner.layers[0].get_weights()[0]))
print("binary acc nonbinary labels", float(keras.metrics.BinaryAccuracy()(np.array([[0.7], [1.0], [0.0]]), np.array([[0.9], [0.8], [0.1]]))))
print("leaky", keras.layers.Activation("leaky_relu")(np.array([[-1.0, 2.0]])).tolist())
