"""Keras 3 oracle for tests/test_losses_metrics_exact.py::test_a_probability_of_one_is_clipped_to_one_minus_eps.

Run: KERAS_BACKEND=torch /tmp/kenv/bin/python tools/keras_oracle/losses_clip_exact.py
Keras 3.15.1 prints 1.0000000494736474e-07 twice: a probability of exactly 1 is clipped to
1 - 1e-7 before the log, so it costs -log(1 - 1e-7), not 0.
"""

import keras
import numpy as np

print(keras.__version__)
print(float(keras.losses.categorical_crossentropy(np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]]))[0]))
print(float(keras.losses.sparse_categorical_crossentropy(np.array([0]), np.array([[1.0, 0.0]]))[0]))
