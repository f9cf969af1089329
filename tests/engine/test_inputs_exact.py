"""Exact unit tests of brisk.engine.inputs, called directly (no fit): conversions, label
checks against the loss and output shape, sample weights, class-weight tables and the
validation set, with full error messages and exact returned values."""

import numpy as np
import pytest
import torch

from brisk import losses
from brisk.engine import inputs

SCCE = "sparse_categorical_crossentropy"


# --- to_tensor ---------------------------------------------------------------------------

def test_to_tensor_float64_becomes_float32():
    t = inputs.to_tensor(np.array([1.5, -2.0], dtype=np.float64), "x")
    assert t.dtype == torch.float32
    assert t.tolist() == [1.5, -2.0]
    t = inputs.to_tensor([0.25, 0.5], "x")  # a list of Python floats is float64 in numpy
    assert t.dtype == torch.float32
    assert t.tolist() == [0.25, 0.5]


def test_to_tensor_keeps_other_numeric_dtypes():
    assert inputs.to_tensor(np.array([1, 2], dtype=np.int32), "x").dtype == torch.int32
    assert inputs.to_tensor(np.array([1.0], dtype=np.float16), "x").dtype == torch.float16
    assert inputs.to_tensor(np.array([True]), "x").dtype == torch.bool


# --- check_targets: sparse labels ----------------------------------------------------------

def test_sparse_two_column_labels_not_one_hot_have_no_hint():
    loss = losses.SparseCategoricalCrossentropy()
    with pytest.raises(ValueError) as e:
        inputs.check_targets(loss, (3,), torch.zeros(4, 2))
    assert str(e.value) == (f"y: {SCCE} needs one integer class label per sample, shape "
                            "(N,) or (N, 1); got shape (4, 2)")


def test_sparse_one_hot_labels_get_the_hint():
    loss = losses.SparseCategoricalCrossentropy()
    with pytest.raises(ValueError) as e:
        inputs.check_targets(loss, (3,), torch.zeros(4, 3), name="val")
    assert str(e.value) == (f"val: {SCCE} needs one integer class label per sample, shape "
                            "(N,) or (N, 1); got shape (4, 3), which looks one-hot: use "
                            "loss='categorical_crossentropy', or pass the class indices "
                            "y.argmax(axis=1)")


def test_sparse_n_by_1_labels_are_squeezed():
    loss = losses.SparseCategoricalCrossentropy()
    y = inputs.check_targets(loss, (3,), torch.tensor([[0], [2], [1]]))
    assert y.dtype == torch.int64
    assert y.shape == (3,)
    assert y.tolist() == [0, 2, 1]


def test_sparse_float_n_by_1_labels_are_squeezed_to_int64():
    loss = losses.SparseCategoricalCrossentropy()
    y = inputs.check_targets(loss, (3,), torch.tensor([[2.0], [0.0]]))
    assert y.dtype == torch.int64
    assert y.tolist() == [2, 0]


def test_sparse_sequence_labels_with_trailing_axis_are_squeezed():
    """(N, T, 1) labels for (T, C) outputs become (N, T), as Keras squeezes."""
    loss = losses.SparseCategoricalCrossentropy()
    y = torch.tensor([[[0], [2], [1], [2]], [[1], [1], [0], [0]]])  # (2, 4, 1)
    out = inputs.check_targets(loss, (4, 3), y)
    assert out.shape == (2, 4)
    assert out.tolist() == [[0, 2, 1, 2], [1, 1, 0, 0]]


def test_sparse_sequence_labels_without_trailing_axis_pass():
    loss = losses.SparseCategoricalCrossentropy()
    out = inputs.check_targets(loss, (4, 3), torch.tensor([[0, 1, 2, 0]]))
    assert out.tolist() == [[0, 1, 2, 0]]


def test_sparse_trailing_one_not_squeezed_when_rank_does_not_match():
    """(N, T, 1) labels for a flat (C,) output: the rank is not len(out) + 1, no squeeze."""
    loss = losses.SparseCategoricalCrossentropy()
    y = inputs.check_targets(loss, (3,), torch.tensor([[[0], [2]], [[1], [1]]]))
    assert y.shape == (2, 2, 1)
    assert y.tolist() == [[[0], [2]], [[1], [1]]]


def test_sparse_single_label_for_scalar_output_keeps_its_batch_axis():
    loss = losses.SparseCategoricalCrossentropy()
    y = inputs.check_targets(loss, (), torch.tensor([0]))
    assert y.shape == (1,)
    assert y.tolist() == [0]


def test_sparse_scalar_output_has_one_class():
    loss = losses.SparseCategoricalCrossentropy()
    with pytest.raises(ValueError) as e:
        inputs.check_targets(loss, (), torch.tensor([0, 1]))
    assert str(e.value) == (f"y: labels must be in [0, 0] for a model with 1 outputs and "
                            f"{SCCE}; found labels in [0, 1]")


def test_sparse_sequence_wrong_step_count_message():
    loss = losses.SparseCategoricalCrossentropy()
    with pytest.raises(ValueError) as e:
        inputs.check_targets(loss, (4, 3), torch.zeros(2, 5, dtype=torch.int64))
    assert str(e.value) == (f"y: {SCCE} on sequence outputs (steps 4, 3 classes) needs one "
                            "label per step, shape (N, 4); got (2, 5)")


def test_sparse_sequence_n_by_1_labels_not_squeezed_for_sequences():
    """(N, 1) labels for (T, C) outputs: rank 2 is not 3, so no squeeze, and the error
    shows the labels' own shape."""
    loss = losses.SparseCategoricalCrossentropy()
    with pytest.raises(ValueError) as e:
        inputs.check_targets(loss, (2, 5), torch.zeros(3, 1, dtype=torch.int64))
    assert str(e.value) == (f"y: {SCCE} on sequence outputs (steps 2, 5 classes) needs one "
                            "label per step, shape (N, 2); got (3, 1)")


# --- check_targets: dense labels ---------------------------------------------------------

def test_categorical_multi_axis_shape_message():
    loss = losses.CategoricalCrossentropy()
    with pytest.raises(ValueError) as e:
        inputs.check_targets(loss, (2, 3), torch.zeros(4, 3))
    assert str(e.value) == ("y: categorical_crossentropy needs one-hot labels of shape "
                            "(N, 2, 3), got (4, 3); use sparse_categorical_crossentropy for "
                            "integer labels")


def test_dense_single_sample_accepted():
    loss = losses.MeanSquaredError()
    y = inputs.check_targets(loss, (2,), torch.tensor([[1.0, 2.0]]))
    assert y.dtype == torch.float32
    assert y.tolist() == [[1.0, 2.0]]


def test_dense_single_sample_wrong_size_message():
    loss = losses.MeanSquaredError()
    with pytest.raises(ValueError) as e:
        inputs.check_targets(loss, (2,), torch.tensor([[1.0, 2.0, 3.0]]))
    assert str(e.value) == "y: each target has 3 values but the model outputs 2 per sample"


def test_dense_int_labels_become_float32():
    loss = losses.MeanSquaredError()
    y = inputs.check_targets(loss, (2,), torch.tensor([[1, 2], [3, 4]]))
    assert y.dtype == torch.float32
    assert y.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_dense_float_labels_keep_their_dtype():
    loss = losses.MeanSquaredError()
    y = inputs.check_targets(loss, (1,), torch.tensor([[0.5]], dtype=torch.float64))
    assert y.dtype == torch.float64
    y = inputs.check_targets(loss, (1,), torch.tensor([[0.5]], dtype=torch.float16))
    assert y.dtype == torch.float16


# --- check_sample_weight -----------------------------------------------------------------

def test_sample_weight_none_passes():
    assert inputs.check_sample_weight(None, torch.zeros(3), torch.zeros(3), False) is None


def test_sample_weight_needs_array_inputs_message():
    with pytest.raises(ValueError) as e:
        inputs.check_sample_weight(np.ones(3), [[0.0], [1.0], [2.0]], torch.zeros(3), True)
    assert str(e.value) == ("sample_weight: only with array inputs; a Dataset or loader can "
                            "yield (x, y, sample_weight) batches instead")


def test_sample_weight_needs_y_message():
    with pytest.raises(ValueError) as e:
        inputs.check_sample_weight(np.ones(3), torch.zeros(3, 1), None, True)
    assert str(e.value) == "sample_weight: needs y"


def test_sample_weight_needs_keras_loss_message():
    with pytest.raises(ValueError) as e:
        inputs.check_sample_weight(np.ones(3), torch.zeros(3, 1), torch.zeros(3), False)
    assert str(e.value) == ("sample_weight: needs a loss that takes per-sample weights (a "
                            "name or a brisk.losses.Loss); a torch loss function takes none")


def test_sample_weight_bad_dtype_names_the_argument():
    with pytest.raises(TypeError) as e:
        inputs.check_sample_weight(np.array(["a", "b"]), torch.zeros(2, 1), torch.zeros(2),
                                   True, name="val weights")
    assert str(e.value) == "val weights: expected a numeric array, got dtype <U1"


def test_sample_weight_column_is_flattened():
    w = inputs.check_sample_weight(np.array([[0.5], [2.0], [1.0]]), torch.zeros(3, 4),
                                   torch.zeros(3), True)
    assert w.shape == (3,)
    assert w.dtype == torch.float32
    assert w.tolist() == [0.5, 2.0, 1.0]


def test_sample_weight_plain_vector_accepted():
    w = inputs.check_sample_weight([1, 0, 3], torch.zeros(3, 4), torch.zeros(3), True)
    assert w.tolist() == [1, 0, 3]


def test_sample_weight_two_columns_refused_as_is():
    with pytest.raises(ValueError) as e:
        inputs.check_sample_weight(np.ones((3, 2)), torch.zeros(3, 4), torch.zeros(3), True)
    assert str(e.value) == "sample_weight: expected shape (3,), got (3, 2)"


def test_sample_weight_single_column_wrong_length():
    with pytest.raises(ValueError) as e:
        inputs.check_sample_weight(np.ones((2, 1)), torch.zeros(3, 4), torch.zeros(3), True)
    assert str(e.value) == "sample_weight: expected shape (3,), got (2,)"


def test_sample_weight_nan_alone_refused():
    with pytest.raises(ValueError) as e:
        inputs.check_sample_weight(np.array([1.0, np.nan]), torch.zeros(2, 1), torch.zeros(2),
                                   True)
    assert str(e.value) == "sample_weight: expected finite weights >= 0"


def test_sample_weight_negative_alone_refused():
    with pytest.raises(ValueError) as e:
        inputs.check_sample_weight(np.array([1.0, -0.5]), torch.zeros(2, 1), torch.zeros(2),
                                   True)
    assert str(e.value) == "sample_weight: expected finite weights >= 0"


def test_sample_weight_zero_accepted():
    w = inputs.check_sample_weight(np.array([0.0, 0.0]), torch.zeros(2, 1), torch.zeros(2), True)
    assert w.tolist() == [0.0, 0.0]


# --- class_weight_table ------------------------------------------------------------------

def test_class_weight_table_on_the_given_device():
    table = inputs.class_weight_table({1: 3.0}, True, (3,), torch.device("meta"))
    assert table.device.type == "meta"
    assert table.shape == (3,)


# --- validation_set ----------------------------------------------------------------------

def test_validation_data_sample_weight_needs_y():
    x = torch.zeros(4, 2)
    y = torch.zeros(4)
    with pytest.raises(ValueError) as e:
        inputs.validation_set(x, y, None, 0.0, (np.zeros((2, 2)), None, np.ones(2)), True)
    assert str(e.value) == "validation_data sample_weight: needs y"


def test_validation_data_with_sample_weight_returned():
    x = torch.zeros(4, 2)
    y = torch.zeros(4)
    xo, yo, sw, val, val_sw = inputs.validation_set(
        x, y, None, 0.0, (np.ones((2, 2)), np.array([1.0, 0.0]), np.array([0.5, 2.0])), True)
    assert xo is x and yo is y and sw is None
    assert val[0].tolist() == [[1.0, 1.0], [1.0, 1.0]]
    assert val[1].tolist() == [1.0, 0.0]
    assert val_sw.tolist() == [0.5, 2.0]
