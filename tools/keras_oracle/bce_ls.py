import os; os.environ["KERAS_BACKEND"]="torch"
import numpy as np, keras
yt = np.array([[1.0], [0.0], [1.0]], "float32"); yp = np.array([[0.9], [0.2], [0.4]], "float32")
print("probs", float(keras.losses.BinaryCrossentropy(label_smoothing=0.2)(yt, yp)))
print("logits", float(keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.2)(yt, np.array([[2.0], [-1.0], [0.5]], "float32"))))
