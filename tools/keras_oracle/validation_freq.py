import os; os.environ["KERAS_BACKEND"]="torch"
import numpy as np, keras
from keras import layers
X=np.random.rand(8,3).astype("float32"); Y=np.random.rand(8,2).astype("float32")
m = keras.Sequential([keras.Input((3,)), layers.Dense(2)]); m.compile("sgd","mse")
h = m.fit(X, Y, epochs=4, verbose=0, validation_data=(X, Y), validation_freq=2)
print({k: len(v) for k, v in h.history.items()}, h.epoch)
