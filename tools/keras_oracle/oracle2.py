import os; os.environ["KERAS_BACKEND"]="torch"
import numpy as np, keras
from keras import layers
keras.utils.set_random_seed(0)
# section 2: float64 / int features
m = keras.Sequential([keras.Input((6,)), layers.Dense(1)]); m.compile("sgd", "mse")
h = m.fit(np.random.randn(64, 6), np.random.randn(64), epochs=1, verbose=0); print("float64 ok", h.history.keys())
h = m.fit(np.random.randint(0, 5, (64, 6)), np.random.randn(64), epochs=1, verbose=0); print("int ok")
print("dtype of weights", m.layers[0].kernel.dtype)
# Dense -> BN with last batch of one sample
m = keras.Sequential([keras.Input((4,)), layers.Dense(3), layers.BatchNormalization(), layers.Dense(1)]); m.compile("sgd", "mse")
h = m.fit(np.random.randn(33, 4).astype("float32"), np.random.randn(33).astype("float32"), batch_size=32, epochs=1, verbose=0)
print("BN last batch 1:", h.history, "moving var", m.layers[1].moving_variance.numpy()[:3])
# one-hot to sparse loss
m = keras.Sequential([keras.Input((4,)), layers.Dense(3, activation="softmax")]); m.compile("sgd", "sparse_categorical_crossentropy")
try:
    m.fit(np.random.randn(32, 4).astype("float32"), np.eye(3)[np.random.randint(0, 3, 32)], epochs=1, verbose=0); print("onehot sparse: trained")
except Exception as e: print("onehot sparse error:", type(e).__name__, str(e)[:300])
