"""Every metric on hand-made cases at its boundaries (Keras 3 semantics).

  binary accuracy   y_pred > threshold (0.5): a probability exactly at the threshold is a 0
  top-k             the true class ranked exactly k-th is a hit; (k+1)-th is a miss
  accuracy          argmax; 'accuracy' follows the loss (binary / categorical / sparse)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import brisk
from brisk.layers import Dense
from brisk.metrics import (
    BinaryAccuracy,
    CategoricalAccuracy,
    MeanAbsoluteError,
    MeanSquaredError,
    SparseCategoricalAccuracy,
    SparseTopKCategoricalAccuracy,
    TopKCategoricalAccuracy,
)


def value(metric, y_pred, y_true):
    s, c = metric.update(torch.as_tensor(y_pred, dtype=torch.float32), torch.as_tensor(y_true))
    return float(s) / int(c)


def ranked_scores():
    """Row r: the true class 0 is ranked exactly (r + 1)-th (no ties)."""
    rows = []
    for r in range(6):
        others = [10.0 - i for i in range(5)]  # 10, 9, 8, 7, 6
        true_score = 10.5 - r  # above r of the others
        rows.append([true_score, *others])
    return torch.tensor(rows)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_top_k_hits_exactly_the_first_k_ranks(k):
    scores = ranked_scores()
    ranks = 1 + (scores[:, 1:] > scores[:, :1]).sum(1)
    assert ranks.tolist() == [1, 2, 3, 4, 5, 6]
    labels = torch.zeros(6, dtype=torch.long)
    sparse = SparseTopKCategoricalAccuracy(k=k)
    hits = [value(sparse, scores[r:r + 1], labels[r:r + 1]) for r in range(6)]
    assert hits == [1.0] * k + [0.0] * (6 - k)  # rank k: hit, rank k+1: miss
    dense = TopKCategoricalAccuracy(k=k)
    one_hot = torch.nn.functional.one_hot(labels, 6).float()
    assert value(dense, scores, one_hot) == pytest.approx(k / 6)
    assert value(sparse, scores, labels) == pytest.approx(k / 6)


def test_top_k_with_k_at_least_the_classes_is_always_a_hit():
    scores, labels = ranked_scores(), torch.zeros(6, dtype=torch.long)
    assert value(SparseTopKCategoricalAccuracy(k=6), scores, labels) == 1.0
    assert value(SparseTopKCategoricalAccuracy(k=9), scores, labels) == 1.0
    with pytest.raises(ValueError, match="k: expected a positive int"):
        SparseTopKCategoricalAccuracy(k=0)


@pytest.mark.parametrize(
    "p, label, hit",
    [
        (0.5, 0, 1.0),  # exactly at the threshold: predicted 0
        (0.5, 1, 0.0),
        (0.5001, 1, 1.0),
        (0.4999, 0, 1.0),
        (0.3, 0, 1.0),  # a threshold at 0 would call 0.3 a 1
        (0.3, 1, 0.0),
        (0.9, 1, 1.0),
        (0.0, 0, 1.0),
        (1.0, 1, 1.0),
    ],
)
def test_binary_accuracy_thresholds_probabilities_at_one_half(p, label, hit):
    assert value(BinaryAccuracy(), [[p]], [label]) == hit


def test_binary_accuracy_custom_threshold_and_many_outputs():
    m = BinaryAccuracy(threshold=0.8)
    assert value(m, [[0.7, 0.81, 0.8, 0.95]], [[0, 1, 0, 0]]) == 0.75
    assert value(BinaryAccuracy(), [[0.2, 0.7], [0.6, 0.1]], [[0, 1], [0, 0]]) == 0.75


def test_sparse_and_categorical_accuracy_hand_made():
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6], [0.3, 0.4, 0.3]])
    labels = torch.tensor([1, 1, 2, 0])
    assert value(SparseCategoricalAccuracy(), scores, labels) == 0.5
    assert value(SparseCategoricalAccuracy(), scores, labels[:, None]) == 0.5  # (N, 1) labels
    assert value(CategoricalAccuracy(), scores, torch.eye(3)[labels]) == 0.5


def test_accuracy_on_channels_first_maps_uses_axis_1():
    scores = torch.zeros(1, 3, 2, 2)
    scores[0, 2, 0, 0] = scores[0, 1, 0, 1] = scores[0, 0, 1, 0] = scores[0, 2, 1, 1] = 1.0
    labels = torch.tensor([[[2, 1], [1, 2]]])  # 3 of 4 pixels right
    assert value(SparseCategoricalAccuracy(), scores, labels) == 0.75


def test_mean_errors_sum_every_element():
    pred, true = [[1.0, 2.0], [0.0, -2.0]], [[0.0, 0.0], [0.0, 0.0]]
    assert value(MeanAbsoluteError(), pred, true) == pytest.approx(5 / 4)
    assert value(MeanSquaredError(), pred, true) == pytest.approx(9 / 4)


# Keras 3.15.1, keras.src.trainers.compile_utils.is_binary_or_sparse_categorical: the
# kind of 'accuracy' follows the shapes of y_pred and y_true, whatever the loss.
@pytest.mark.parametrize(
    "pred_shape, true_shape, cls",
    [
        ((6, 1), (6,), BinaryAccuracy),            # one output: binary, labels of any rank
        ((6, 1), (6, 1), BinaryAccuracy),
        ((6, 3), (6,), SparseCategoricalAccuracy),  # labels of lower rank: sparse
        ((6, 3), (6, 1), SparseCategoricalAccuracy),  # one label column, several outputs
        ((6, 3), (6, 3), CategoricalAccuracy),      # same shape: one-hot
        ((2, 3, 4, 4), (2, 4, 4), SparseCategoricalAccuracy),  # (N, C, H, W) outputs
        ((2, 3, 4, 4), (2, 3, 4, 4), CategoricalAccuracy),
    ],
)
def test_accuracy_is_resolved_from_the_shapes_as_keras_does(pred_shape, true_shape, cls):
    for name in ("accuracy", "acc"):
        for loss in (None, "mse", "binary_crossentropy", "categorical_crossentropy"):
            m = brisk.metrics.get(name, brisk.losses.get(loss) if loss else None)
            pred = torch.rand(pred_shape)
            true = (torch.randint(0, 2, true_shape).float() if cls is not SparseCategoricalAccuracy
                    else torch.randint(0, pred_shape[1], true_shape))
            s, c = m.update(pred, true)
            assert type(m.impl) is cls and m.name == name
            s2, c2 = cls().update(pred, true)
            assert int(s) == int(s2) and int(c) == int(c2)


def test_top_k_accuracy_is_sparse_or_categorical_from_the_label_shape():
    top = brisk.metrics.get("top_k_accuracy")
    top.update(torch.rand(4, 7), torch.eye(7)[:4])
    assert type(top.impl) is TopKCategoricalAccuracy and top.impl.k == 5
    top = brisk.metrics.get("top_k_accuracy")
    top.update(torch.rand(4, 7), torch.tensor([0, 1, 2, 3]))
    assert type(top.impl) is SparseTopKCategoricalAccuracy


def test_accuracy_is_argmax_invariant_only_when_the_output_has_several_classes():
    m = brisk.metrics.get("accuracy")
    assert m.argmax_invariant is False  # not known yet: the engine applies the activation
    m.set_output_shape((1,))
    assert m.argmax_invariant is False
    m.set_output_shape((10,))
    assert m.argmax_invariant is True
    m.set_output_shape((3, 8, 8))  # (C, H, W)
    assert m.argmax_invariant is True


def test_metric_names_and_errors():
    assert type(brisk.metrics.get("mae")) is MeanAbsoluteError
    assert type(brisk.metrics.get("mean_squared_error")) is MeanSquaredError
    m = BinaryAccuracy()
    assert brisk.metrics.get(m) is m
    with pytest.raises(ValueError, match="metrics: unknown name 'acuracy'.*'accuracy'"):
        brisk.metrics.get("acuracy")
    with pytest.raises(TypeError, match="metrics: expected names"):
        brisk.metrics.get(3)


def test_engine_gives_binary_accuracy_the_probabilities():
    """A sigmoid model trains on logits; its accuracy must threshold sigmoid(logit) at 0.5,
    i.e. the logit at 0. Logits 0.3 and 0.2 for label 1: right; thresholding the logits
    at 0.5 would call them 0."""
    model = brisk.Sequential([Dense(1, activation="sigmoid", input_shape=(1,))])
    model.build((1,))
    with torch.no_grad():
        model.layers[0].linear.weight.fill_(1.0)
        model.layers[0].linear.bias.zero_()
    model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy"])
    x = np.array([[-0.4], [0.3], [0.2], [2.0], [-3.0]], dtype="float32")
    y = np.array([0, 1, 1, 1, 1], dtype="float32")
    _, acc = model.evaluate(x, y)
    expected = np.mean((model.predict(x)[:, 0] > 0.5) == (y > 0.5))
    assert expected == 0.8 and acc == pytest.approx(expected)  # on the logits: 0.4


def test_accuracies_on_sequences_use_the_last_axis():
    """(N, T, C) outputs: classes on the last axis (only 4-D maps put them on axis 1)."""
    scores = torch.tensor([[[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]],
                           [[0.6, 0.4], [0.2, 0.8], [0.9, 0.1]]])
    labels = torch.tensor([[1, 0, 0], [0, 0, 0]])  # 4 of 6 right
    assert value(SparseCategoricalAccuracy(), scores, labels) == pytest.approx(4 / 6)
    assert value(CategoricalAccuracy(), scores, torch.eye(2)[labels]) == pytest.approx(4 / 6)


def test_categorical_accuracy_three_of_four():
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6], [0.3, 0.4, 0.3]])
    labels = torch.tensor([1, 0, 2, 0])
    assert value(CategoricalAccuracy(), scores, torch.eye(3)[labels]) == 0.75
    assert value(SparseCategoricalAccuracy(), scores, labels) == 0.75


def test_mean_errors_with_nonzero_targets():
    pred, true = [[1.0, 2.0], [0.0, -2.0]], [[0.5, 3.0], [-1.0, -2.0]]
    assert value(MeanAbsoluteError(), pred, true) == pytest.approx((0.5 + 1 + 1 + 0) / 4)
    assert value(MeanSquaredError(), pred, true) == pytest.approx((0.25 + 1 + 1 + 0) / 4)


def test_top_k_aliases():
    for alias in ("top5", "top_5_accuracy", "TOP_K_ACCURACY"):
        m = brisk.metrics.get(alias)
        m.update(torch.rand(3, 6), torch.tensor([0, 1, 2]))
        assert type(m.impl) is SparseTopKCategoricalAccuracy and m.impl.k == 5 and m.name == alias


def test_unknown_metric_messages_list_the_valid_names_exactly():
    valid = ("acc, accuracy, binary_accuracy, categorical_accuracy, mae, mean_absolute_error, "
             "mean_squared_error, mse, sparse_categorical_accuracy, "
             "sparse_top_k_categorical_accuracy, top_k_accuracy, top_k_categorical_accuracy")
    with pytest.raises(ValueError) as e:
        brisk.metrics.get("zzz")
    assert str(e.value) == f"metrics: unknown name 'zzz'. Valid names: {valid}"
    with pytest.raises(ValueError) as e:
        brisk.metrics.get("top_k_acuracy")
    assert str(e.value) == (
        "metrics: unknown name 'top_k_acuracy'. Did you mean 'top_k_accuracy', "
        f"'top_k_categorical_accuracy', 'accuracy'? Valid names: {valid}")


def test_metric_repr():
    assert repr(BinaryAccuracy()) == "BinaryAccuracy(name='binary_accuracy')"
