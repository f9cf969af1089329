"""``brisk.Sequential``: a Keras-style model that is a real ``torch.nn.Module``.

``compile``/``fit``/``evaluate``/``predict`` delegate to one engine, ``brisk.Trainer``.

Example::

    import brisk
    from brisk.layers import Dense
    model = brisk.Sequential([
        Dense(64, activation="relu", input_shape=(784,)),
        Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    # history = model.fit(x_train, y_train, epochs=3, batch_size=32)
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune as tprune

from brisk import losses
from brisk import metrics as metrics_mod
from brisk.api import layers as L
from brisk.engine.checkpoint import (
    load_safetensors,
    plain_state_dict,
    refresh_pruned,
    save_safetensors,
)
from brisk.engine.freeze import frozen_batchnorm_eval, set_trainable, trainable_parameters
from brisk.utils import auto_name

FORMAT = "brisk.Sequential"
FORMAT_VERSION = 2  # 2: Flatten reads images in Keras's (H, W, C) order


class Sequential(nn.Module):
    """A linear stack of layers (brisk layers, other ``Sequential`` models or any
    ``nn.Module``).

    ``name``: a str; by default Keras's automatic name, 'sequential', 'sequential_1', ...
    (a per-session counter, see ``brisk.utils.clear_session``). Raises ``TypeError`` for
    a name that is not a str.

    A ``Sequential`` used as a layer of another one (Keras's transfer-learning pattern,
    ``Sequential([Input(shape), base, Dense(1)])``) is built, saved, cloned, counted and
    listed in ``summary`` as one layer, as in Keras; ``get_weights`` lists its weights in
    place, flat. The outer model hands it tensors in its internal layout (image batches
    (N, C, H, W), ``forward(x, nested=True)``); called on its own it still takes Keras's
    (N, H, W, C).
    """

    def __init__(self, layers: Iterable[nn.Module] | None = None, name: str | None = None):
        super().__init__()
        if name is None:
            name = auto_name(type(self).__name__)
        elif not isinstance(name, str) or not name:
            raise TypeError(f"name: expected a non-empty str, got {name!r}")
        self.name = name
        self.layers = nn.ModuleList()
        self._keras_input_shape: tuple[int, ...] | None = None
        self._channels_last = False  # images are NCHW inside; Keras shapes are NHWC
        self.built = False
        self._trainer = None
        self._compile_config: dict | None = None
        self._trainable = True
        for layer in layers or []:
            self.add(layer)

    # ----------------------------------------------------------------- building
    def add(self, layer: nn.Module) -> None:
        """Append a layer. As in Keras, the model is built as soon as its input shape is
        known (``Input(shape)`` or ``input_shape=`` on the first layer), so ``summary``,
        ``count_params`` and ``save`` work before any data; a layer added to a built model
        is built on the current output shape."""
        if not isinstance(layer, nn.Module):
            raise TypeError(f"layer: expected a brisk layer or torch.nn.Module, got {layer!r}")
        if isinstance(layer, L.Input):
            if len(self.layers):
                raise ValueError("add: Input must be the first layer")
            self._keras_input_shape = layer.input_shape
            return
        if layer is self:
            raise ValueError("layer: a Sequential cannot be a layer of itself")
        name = getattr(layer, "name", None)
        if isinstance(name, str) and any(getattr(m, "name", None) == name for m in self.layers):
            # Keras 3 Sequential.add: names are unique within a model (same message)
            raise ValueError(
                "layer: all layers added to a Sequential model should have unique names. "
                f"Name {name!r} is already the name of a layer in this model. Update the "
                "`name` argument to pass a unique name.")
        if isinstance(layer, Sequential):  # Keras: a built nested model gives the input
            if not len(self.layers) and self._keras_input_shape is None:
                self._keras_input_shape = layer.sample_shape
        elif not len(self.layers) and getattr(layer, "input_shape", None) is not None:
            self._keras_input_shape = tuple(layer.input_shape)
        self.layers.append(layer)
        if self.built:
            self._build_added(layer)
        elif self._keras_input_shape is not None:
            self.build(self._keras_input_shape)

    def _build_added(self, layer: nn.Module) -> None:
        spatial = getattr(layer, "spatial", False)
        if spatial and not self._channels_last and len(self._keras_input_shape) == 3:
            # the first image layer decides the NHWC layout: build everything again
            # (only layers built from a shape, never trained, exist before it)
            self.built = False
            self.build(self._keras_input_shape)
            return
        cur = self._shapes[-1][1] if self._shapes else self._layout(self._keras_input_shape)
        self._shapes.append((cur, self._build_layer(layer, cur, self._keras_input_shape)))

    def _layout(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (shape[2], shape[0], shape[1]) if self._channels_last else shape

    @property
    def spatial(self) -> bool:
        """True when a layer needs the NCHW image layout (a nested model counts as its
        layers), so image input is given as Keras's (N, H, W, C) and permuted once."""
        return any(getattr(layer, "spatial", False) for layer in self.layers)

    def _images_nchw(self, shape: tuple[int, ...], input_shape: tuple[int, ...]) -> bool:
        # Rank-3 tensors inside are NCHW images, except in a model whose rank-3 input is
        # not permuted (no image layer): Reshape((h, w, c)) of a flat input is NCHW too.
        return len(shape) == 3 and (self._channels_last or len(input_shape) != 3)

    def _build_layer(self, layer: nn.Module, cur: tuple[int, ...],
                     input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if isinstance(layer, L.Layer):
            return tuple(layer._build_for(cur))
        if isinstance(layer, Sequential):
            nchw = self._images_nchw(cur, input_shape)
            return layer._build_nested(cur, (cur[1], cur[2], cur[0]) if nchw else cur, nchw)
        # an arbitrary module: infer its output shape by running it on zeros
        with torch.no_grad():
            modes = [(m, m.training) for m in layer.modules()]
            layer.eval()
            out = tuple(layer(torch.zeros(2, *cur)).shape[1:])
            for m, mode in modes:
                m.training = mode
        return out

    @property
    def trainable(self) -> bool:
        """Keras's flag: ``model.trainable = False`` freezes every layer below (set on each
        of them, as Keras does); read by ``fit`` and ``summary`` when they run, so a change
        after ``compile`` takes effect at the next ``fit``. See ``brisk.engine.freeze``."""
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        set_trainable(self, value)
        self._trainable = bool(value)

    def train(self, mode: bool = True) -> Sequential:
        """``nn.Module.train``, keeping frozen BatchNorm layers in inference mode."""
        super().train(mode)
        if mode:
            frozen_batchnorm_eval(self)
        return self

    @property
    def data_format(self) -> str:
        """'channels_last' when image inputs are given as (N, H, W, C), as in Keras."""
        return "channels_last" if self._channels_last else "channels_first"

    @property
    def sample_shape(self) -> tuple[int, ...] | None:
        """Per-sample input shape, Keras layout, without the batch axis (None until known)."""
        return self._keras_input_shape

    @property
    def input_shape(self) -> tuple | None:
        """Keras's ``model.input_shape``: ``(None, *sample_shape)``."""
        return None if self._keras_input_shape is None else (None, *self._keras_input_shape)

    # ----------------------------------------------------------------- Keras model API
    def _layer_name(self, i: int, layer: nn.Module) -> str:
        return getattr(layer, "name", None) or f"{_class_name(layer).lower()}_{i}"

    def get_layer(self, name: str | None = None, index: int | None = None) -> nn.Module:
        """A layer by name or by index (Keras ``Model.get_layer``). Names are the layers'
        ``name`` (Keras's automatic 'dense', 'dense_1', ... unless given); a torch module
        without one is '<type>_<index>', as in ``summary()``. Raises ``ValueError`` for an
        unknown name or index, or when both or neither are given."""
        if (name is None) == (index is None):
            raise ValueError("get_layer: give either name= or index=")
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, int) or not -len(self.layers) <= index < len(self.layers):
                raise ValueError(f"get_layer: was asked for the layer at index {index!r} but the "
                                 f"model only has {len(self.layers)} layers")
            return self.layers[index]
        names = [self._layer_name(i, layer) for i, layer in enumerate(self.layers)]
        if name not in names:
            raise ValueError(f"get_layer: no such layer: {name!r}. Existing layers are: {names}")
        return self.layers[names.index(name)]

    def pop(self) -> nn.Module:
        """Remove and return the last layer (Keras ``Sequential.pop``)."""
        if not len(self.layers):
            raise ValueError("pop: the model has no layers")
        layer = self.layers[-1]
        del self.layers[-1]
        if self.built:
            self._shapes.pop()
            if not len(self.layers):
                self.built = False
        return layer

    @property
    def weights(self) -> list[torch.Tensor]:
        """Every weight, layer by layer (torch tensors, torch layout): parameters and the
        BatchNorm moving statistics, as Keras's ``model.weights``."""
        self._require_built("weights")
        return [w for layer in self.layers for w in _weights_of(layer)]

    @property
    def trainable_weights(self) -> list[torch.Tensor]:
        """Weights that ``fit`` trains (the trainable flags and ``requires_grad`` as now)."""
        keep = {id(p) for p in trainable_parameters(self)}
        return [w for w in self.weights if id(w) in keep]

    @property
    def non_trainable_weights(self) -> list[torch.Tensor]:
        """Frozen parameters and BatchNorm moving statistics (Keras's count)."""
        keep = {id(p) for p in trainable_parameters(self)}
        return [w for w in self.weights if id(w) not in keep]

    def get_weights(self) -> list:
        """The weights as numpy arrays in Keras's layouts: a Dense kernel is (in, out), a
        Conv2D kernel (kh, kw, in, out); other modules' tensors as torch stores them."""
        self._require_built("get_weights")
        refresh_pruned(self)  # a pruned weight as it is now (torch updates it at forward)
        return [to_keras(w.detach().cpu()).numpy().copy()
                for layer in self.layers for w, to_keras, _ in _keras_layout(layer)]

    def set_weights(self, weights: list) -> None:
        """Set every weight from numpy arrays in Keras's layouts (``get_weights``'s order).
        Raises ``ValueError`` for a wrong count or shape, before changing anything."""
        self._require_built("set_weights")
        slots = [s for layer in self.layers for s in _keras_layout(layer)]
        weights = list(weights)
        if len(weights) != len(slots):
            raise ValueError(f"set_weights: the model has {len(slots)} weights, got a list of "
                             f"{len(weights)}")
        new = []
        for i, ((w, to_keras, from_keras), a) in enumerate(zip(slots, weights, strict=True)):
            want = tuple(to_keras(w.detach()).shape)
            if tuple(np.shape(a)) != want:
                raise ValueError(f"set_weights: weight {i} has shape {tuple(np.shape(a))}, "
                                 f"expected {want}")
            new.append(from_keras(torch.as_tensor(np.asarray(a))))
        with torch.no_grad():
            for (w, _, _), t in zip(slots, new, strict=True):
                w.copy_(t.to(device=w.device, dtype=w.dtype))
            for m in self.modules():  # pruned: the values go to <name>_orig, the mask stays
                for hook in m._forward_pre_hooks.values():
                    if isinstance(hook, tprune.BasePruningMethod):
                        getattr(m, hook._tensor_name + "_orig").copy_(getattr(m, hook._tensor_name))
        refresh_pruned(self)  # <name> = <name>_orig * mask, as the next forward computes it

    def save_weights(self, path: str | os.PathLike) -> None:
        """Write the weights to ``path`` (safetensors, whatever the suffix: Keras code that
        names it 'model.weights.h5' runs unchanged), atomically, with a checksum."""
        self._require_built("save_weights")
        tensors = plain_state_dict(self)  # pruning masks folded in: loads as a plain model
        save_safetensors(path, tensors, {"brisk": "weights"})

    def load_weights(self, path: str | os.PathLike) -> None:
        """Load weights written by ``save_weights`` (or ``save``) into this built model.
        Raises ``FileNotFoundError`` naming the file; ``ValueError`` naming it, before any
        weight changes, when it is truncated or corrupt (its checksum does not match) or
        does not fit."""
        self._require_built("load_weights")
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"load_weights: no such file {path!r}")
        state, _ = load_safetensors(path, f"load_weights: {path!r}", "weights file")
        try:
            self.load_state_dict(state)
        except RuntimeError as e:
            raise ValueError(f"load_weights: {path!r} does not fit this model: {e}") from e

    def _require_built(self, what: str) -> None:
        if not self.built:
            if self._keras_input_shape is None:
                raise ValueError(f"{what}: the model is not built; give the first layer "
                                 "input_shape=, add an Input(shape), or call it on data first")
            self.build(self._keras_input_shape)

    def build(self, input_shape: Iterable[int]) -> None:
        """Create every layer's parameters for per-sample ``input_shape`` (Keras layout);
        Keras's ``(None, *sample_shape)`` form is taken too. Layers already built for
        their input shape keep their weights (Keras builds a layer once)."""
        self._build(input_shape, None)

    def _build_nested(self, shape: tuple[int, ...], keras_shape: tuple[int, ...],
                      nchw: bool) -> tuple[int, ...]:
        """Build as a layer of another Sequential, whose tensors arrive in its internal
        layout: per-sample ``shape`` (images NCHW when ``nchw``), ``keras_shape`` in
        Keras's. A model built before keeps its weights; one built for another input
        raises ``ValueError``. Returns the output shape, in the same internal layout."""
        if self.built and self._keras_input_shape != tuple(keras_shape):
            raise ValueError(
                f"layer {self.name!r}: this Sequential was built for per-sample input shape "
                f"{self._keras_input_shape} and is given {tuple(keras_shape)} here")
        if self.built and self._layout(keras_shape) != tuple(shape):
            self.built = False  # the outer layout differs: layers whose shape changes rebuild
        self._build(keras_shape, nchw)
        return self._shapes[-1][1]

    def flops(self, shape: tuple[int, ...] | None = None) -> int:
        """Floating-point operations per sample of a forward pass (built model; a
        multiply-add is 2), summed over the layers as ``summary`` counts them."""
        self._require_built("flops")
        return sum(layer.flops(s_in) for layer, (s_in, _) in zip(self.layers, self._shapes, strict=True)
                   if isinstance(layer, (L.Layer, Sequential)))

    def _build(self, input_shape: Iterable[int], nchw: bool | None) -> None:
        input_shape = tuple(input_shape)
        if input_shape and input_shape[0] is None:
            input_shape = input_shape[1:]
        shape = tuple(int(d) for d in input_shape)
        if self.built:
            if shape != self._keras_input_shape:
                raise ValueError(
                    f"x: per-sample input shape {shape} does not fit the model, which was "
                    f"built for {self._keras_input_shape}"
                )
            return
        if not len(self.layers):
            raise ValueError("Sequential: the model has no layers; add some before using it")
        self._channels_last = (self.spatial and len(shape) == 3) if nchw is None else nchw
        cur = self._layout(shape)
        self._shapes = []
        for layer in self.layers:
            out = self._build_layer(layer, cur, shape)
            self._shapes.append((cur, out))
            cur = out
        self._keras_input_shape = shape
        self.built = True

    def _display_shape(self, shape: tuple[int, ...]) -> tuple:
        if self._images_nchw(shape, self._keras_input_shape):
            shape = (shape[1], shape[2], shape[0])
        return (None, *shape)

    @property
    def output_shape(self) -> tuple | None:
        return self._display_shape(self._shapes[-1][1]) if self.built else None

    @property
    def output_activation(self) -> str | None:
        """'softmax' or 'sigmoid' when the last layer ends in one (the loss then uses logits)."""
        last = self.layers[-1] if len(self.layers) else None
        act = getattr(last, "activation", None)
        if isinstance(last, nn.Softmax):
            return "softmax"
        if isinstance(last, nn.Sigmoid):
            return "sigmoid"
        return act if act in ("softmax", "sigmoid") and hasattr(last, "forward_logits") else None

    # ----------------------------------------------------------------- forward
    def _enter(self, x: torch.Tensor, nested: bool = False) -> torch.Tensor:
        if isinstance(x, np.ndarray):  # Keras models take NumPy arrays too
            if x.dtype == np.float64:
                x = x.astype(np.float32)
            p = next(self.parameters(), None)
            x = torch.as_tensor(x, device=p.device if p is not None else None)
        if not self.built:
            self.build(x.shape[1:])
            self.to(x.device)
        if self._channels_last and not nested:
            if x.dim() != 4:
                raise ValueError(
                    f"x: expected image batches of shape (N, H, W, C), got shape {tuple(x.shape)}"
                )
            x = x.permute(0, 3, 1, 2)  # a free view: NHWC memory is channels_last NCHW
        return x

    def forward(self, x: torch.Tensor, nested: bool = False,
                training: bool | None = None) -> torch.Tensor:
        """The layers in order. ``x``: a batch, (N, H, W, C) for image models as in Keras;
        with ``nested=True`` (what an outer Sequential passes to a Sequential layer) it is
        already in this model's internal layout, images (N, C, H, W).

        ``training=True``/``False`` runs this one call in training or inference mode
        (Dropout, BatchNorm, the Random* layers) and restores every module's mode after, as
        Keras's ``model(x, training=...)``; None (default) uses the current mode. Raises
        ``TypeError`` for another value."""
        if training is not None:
            if not isinstance(training, bool):
                raise TypeError(f"training: expected True, False or None, got {training!r}")
            modes = [(m, m.training) for m in self.modules()]
            self.train(training)  # a frozen BatchNorm stays in inference mode (Keras)
            try:
                return self.forward(x, nested)
            finally:
                for m, mode in modes:
                    m.training = mode
        x = self._enter(x, nested)
        for layer in self.layers:
            x = _call(layer, x)
        return x

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs before a final softmax/sigmoid, for numerically stable losses."""
        if self.output_activation is None:
            return self(x)
        x = self._enter(x)
        *body, last = self.layers
        for layer in body:
            x = _call(layer, x)
        return x if isinstance(last, (nn.Softmax, nn.Sigmoid)) else last.forward_logits(x)

    # ----------------------------------------------------------------- summary
    def count_params(self) -> int:
        """Number of weights, counted as Keras does: parameters plus BatchNorm's moving
        mean and variance (floating-point buffers; not ``num_batches_tracked``). Raises
        ``ValueError`` when the model is not built and its input shape is unknown (Keras)."""
        self._require_built("count_params")
        return _count_weights(self)

    def summary(self, print_fn=print) -> str:
        """Per layer: output shape, weights and FLOPs per sample; then totals. Counts follow
        Keras: BatchNorm moving statistics and frozen (``trainable=False``) weights are
        non-trainable."""
        if not self.built:
            if self._keras_input_shape is None:
                raise ValueError(
                    "summary: the model is not built; give the first layer input_shape=, "
                    "add an Input(shape), or call it on data first"
                )
            self.build(self._keras_input_shape)
        rows = [("Layer (type)", "Output Shape", "Param #", "FLOPs")]
        total_flops = 0
        for i, (layer, (shape_in, shape_out)) in enumerate(zip(self.layers, self._shapes, strict=False)):
            params = _count_weights(layer)
            flops = layer.flops(shape_in) if isinstance(layer, (L.Layer, Sequential)) else 0
            total_flops += flops
            name = self._layer_name(i, layer)
            rows.append(
                (f"{name} ({_class_name(layer)})", str(self._display_shape(shape_out)),
                 f"{params:,}", f"{flops:,}")
            )
        widths = [max(len(r[c]) for r in rows) + 2 for c in range(4)]
        line = "-" * sum(widths)
        fmt = lambda r: "".join(c.ljust(w) for c, w in zip(r, widths, strict=False))  # noqa: E731
        trainable = sum(p.numel() for p in trainable_parameters(self))
        total = self.count_params()
        out = [f'Model: "{self.name}"', line, fmt(rows[0]), "=" * sum(widths)]
        out += [fmt(r) for r in rows[1:]]
        out += [
            "=" * sum(widths),
            f"Total params: {total:,}",
            f"Trainable params: {trainable:,}",
            f"Non-trainable params: {total - trainable:,}",
            f"FLOPs per sample (forward): {total_flops:,}",
            line,
        ]
        text = "\n".join(out)
        if print_fn is not None:
            print_fn(text)
        return text

    # ----------------------------------------------------------------- Keras front
    def compile(self, optimizer: Any = "rmsprop", loss: Any = None, metrics: Any = None,
                **trainer_options: Any) -> None:
        """Configure training (Keras signature). Extra options go to ``brisk.Trainer``
        (``device``, ``precision``, ``compile``, ``schedule``, ``accumulate``, ...).

        Nothing is frozen here: trainable flags, the device and the optimizer's parameter
        groups are read when ``fit`` runs.
        """
        from brisk.engine.trainer import Trainer

        if loss is None:
            raise ValueError("loss: compile needs a loss, e.g. 'sparse_categorical_crossentropy'")
        if metrics is not None and not isinstance(metrics, (str, list, tuple, metrics_mod.Metric)):
            # Keras's dict form maps output names (brisk's Sequential has one output), and
            # `metrics or []` would take 0 or False for none
            raise TypeError(f"metrics: expected a list of metric names or Metric objects, got {metrics!r}")
        self._trainer = Trainer(self, optimizer=optimizer, loss=_keras_loss(loss), metrics=metrics,
                                **trainer_options)
        self._compile_config = _compile_config(optimizer, loss, metrics)

    @property
    def trainer(self):
        if self._trainer is None:
            raise ValueError("the model is not compiled; call model.compile(optimizer, loss) first")
        return self._trainer

    def fit(self, x=None, y=None, **kwargs):
        """Train; see ``brisk.Trainer.fit``. Returns a ``History``."""
        return self.trainer.fit(x, y, **kwargs)

    def evaluate(self, x=None, y=None, **kwargs):
        return self.trainer.evaluate(x, y, **kwargs)

    def predict(self, x, **kwargs):
        if self._trainer is None:  # Keras allows predict on an uncompiled model
            from brisk.engine.trainer import Trainer

            return Trainer(self, loss=None).predict(x, **kwargs)
        return self._trainer.predict(x, **kwargs)

    def lr_find(self, x=None, y=None, **kwargs):
        """Learning-rate range test; see ``brisk.Trainer.lr_find``."""
        return self.trainer.lr_find(x, y, **kwargs)

    @property
    def optimizer(self) -> _OptimizerView:
        """The compiled optimizer, Keras-style: ``model.optimizer.learning_rate`` reads and
        sets the rate (every parameter group, from a callback too); other attributes are
        the torch optimizer's once ``fit`` has built it."""
        return _OptimizerView(self.trainer)

    @property
    def stop_training(self) -> bool:
        return self.trainer.stop_training

    @stop_training.setter
    def stop_training(self, value: bool) -> None:
        self.trainer.stop_training = bool(value)

    @property
    def history(self):
        return self.trainer.history

    # ----------------------------------------------------------------- saving
    def get_config(self) -> dict:
        """The architecture as JSON-able dicts: name, input shape (Keras layout), each
        layer's class, config and ``trainable`` flag (Keras saves it with each layer), a
        nested ``Sequential`` as its own config, and the compile settings. Raises
        ``TypeError`` for a layer that is not a brisk layer or ``Sequential``."""
        specs = []
        for layer in self.layers:
            if isinstance(layer, Sequential):
                spec = {"class": "Sequential", "config": layer.get_config()}
                spec["config"].pop("compile", None)  # only the outer model is compiled
            elif isinstance(layer, L.Layer) and _class_name(layer) in L.LAYERS:
                spec = {"class": _class_name(layer), "config": layer.get_config()}
            else:
                raise TypeError(
                    f"save: layer {_class_name(layer)} is not a brisk layer, so the "
                    "architecture cannot be written; save the weights with "
                    "torch.save(model.state_dict(), path) instead"
                )
            spec["trainable"] = layer.trainable
            specs.append(spec)
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "name": self.name,
            "input_shape": list(self._keras_input_shape) if self._keras_input_shape else None,
            "layers": specs,
            "trainable": self.trainable,
            "compile": self._compile_config,
        }

    @classmethod
    def from_config(cls, config: dict) -> Sequential:
        """The architecture of ``get_config()`` with fresh weights (Keras
        ``Sequential.from_config``): built when the config has an input shape, trainable
        flags as saved. Raises ``ValueError`` for a config brisk did not write."""
        model = cls._architecture(config)
        if config.get("input_shape"):
            model.build(tuple(config["input_shape"]))
        model._restore_flags(config)
        return model

    @classmethod
    def _architecture(cls, config: dict) -> Sequential:
        """The layers of ``config``, names as saved; a nested model is left for the outer
        one to build, in the outer layout."""
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise ValueError("config: expected a dict written by Sequential.get_config()")
        if config.get("version", 0) > FORMAT_VERSION:
            raise ValueError(f"config: version {config.get('version')} is newer than this brisk "
                             f"reads ({FORMAT_VERSION})")
        model = cls(name=config.get("name"))
        for spec in config["layers"]:
            if spec.get("class") == "Sequential":
                model.add(Sequential._architecture(spec["config"]))
                continue
            layer_cls = L.LAYERS.get(spec.get("class"))
            if layer_cls is None:
                raise ValueError(f"config: unknown layer class {spec.get('class')!r}; known: "
                                 f"Sequential, {', '.join(sorted(L.LAYERS))}")
            cfg = dict(spec["config"])
            if layer_cls is L.Flatten and config.get("version", 1) < 2:
                cfg["order"] = "chw"  # its Dense weights were trained on NCHW order
            if "input_shape" in cfg:
                cfg["input_shape"] = tuple(cfg["input_shape"])
            model.add(layer_cls(**cfg))
        return model

    def _restore_flags(self, config: dict) -> None:
        """The saved ``trainable`` flags, outside in: the model's first (it sets every flag
        below), then each layer's, so a layer re-enabled inside a frozen model stays so."""
        if config.get("trainable") is False:
            self.trainable = False
        for layer, spec in zip(self.layers, config["layers"], strict=True):
            flag = spec.get("trainable", True)  # older files wrote only False flags
            if layer.trainable != flag:
                layer.trainable = flag
            if isinstance(layer, Sequential):
                layer._restore_flags(spec["config"])

    def save(self, path: str | os.PathLike) -> None:
        """Write architecture, weights and compile settings to one safetensors file,
        atomically (a crash never leaves a half-written file at ``path``), with a checksum
        of all of them that ``load_model`` verifies. Trained with ``strategy='fsdp'``, the
        weights are sharded: call ``save`` on every rank; the full weights are gathered and
        rank 0 writes them."""
        if not self.built:
            raise ValueError("save: the model is not built yet; train it or call build() first")
        from brisk import distributed

        config = self.get_config()
        tensors = plain_state_dict(self)  # pruning masks folded in: loads as a plain model
        if distributed.is_sharded(self) and not distributed.is_rank_zero():
            return  # FSDP: every rank gathered, rank 0 writes
        save_safetensors(path, tensors, {"brisk": json.dumps(config)})


def _class_name(layer: nn.Module) -> str:
    """The layer's class name. FSDP's ``fully_shard`` swaps a module's class for a subclass
    ``FSDP<class>`` (bases: ``FSDPModule``, the class): the original name is the layer's."""
    cls = type(layer)
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # a torch build without torch.distributed
        return cls.__name__
    if isinstance(layer, FSDPModule):
        cls = next(b for b in cls.__bases__ if b is not FSDPModule)
    return cls.__name__


class _OptimizerView:
    """``model.optimizer``: ``learning_rate`` as in Keras, the rest from torch's optimizer."""

    def __init__(self, trainer):
        self._trainer = trainer

    @property
    def learning_rate(self) -> float:
        opt = self._trainer.optimizer
        if opt is not None:
            return float(opt.param_groups[0]["lr"])
        spec = self._trainer.optimizer_spec
        if spec is not None and hasattr(spec, "learning_rate"):
            return float(spec.learning_rate)
        raise ValueError("optimizer: the learning rate is known once fit has built the optimizer")

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"learning_rate: expected a number >= 0, got {value!r}")
        opt = self._trainer.optimizer
        if opt is None:
            spec = self._trainer.optimizer_spec
            if spec is None or not hasattr(spec, "learning_rate"):
                raise ValueError("optimizer: set the learning rate once fit has built the optimizer")
            spec.learning_rate = float(value)
            return
        for g in opt.param_groups:  # the base too, so a per-step schedule scales the new rate
            g["lr"] = g["initial_lr"] = float(value)

    def __getattr__(self, name: str):
        opt = self._trainer.optimizer
        if opt is None:
            raise AttributeError(f"optimizer: {name!r} exists once fit has built the optimizer")
        return getattr(opt, name)


def _keras_layout(layer: nn.Module) -> list:
    """(tensor, to Keras layout, from Keras layout) for each weight of ``layer``, in Keras's
    order: a Dense kernel is (in, out), a Conv2D kernel (kh, kw, in, out); other weights
    keep torch's layout."""
    same = lambda t: t  # noqa: E731
    if isinstance(layer, Sequential):  # Keras: a nested model's weights in place, flat
        return [slot for sub in layer.layers for slot in _keras_layout(sub)]
    if isinstance(layer, L.Dense):
        out = [(layer.linear.weight, lambda t: t.T, lambda t: t.T)]
        bias = layer.linear.bias
    elif isinstance(layer, (L.DepthwiseConv2D, L.SeparableConv2D)):
        dw = layer.conv if isinstance(layer, L.DepthwiseConv2D) else layer.depthwise
        m = layer.depth_multiplier
        c = dw.weight.shape[0] // m
        # torch (C*m, 1, kh, kw), channel c*m + j  <->  Keras (kh, kw, C, m)
        out = [(dw.weight,
                lambda t, c=c, m=m: t.reshape(c, m, *t.shape[2:]).permute(2, 3, 0, 1),
                lambda t, c=c, m=m: t.permute(2, 3, 0, 1).reshape(c * m, 1, *t.shape[:2]))]
        if isinstance(layer, L.SeparableConv2D):
            out.append((layer.conv.weight, lambda t: t.permute(2, 3, 1, 0),
                        lambda t: t.permute(3, 2, 0, 1)))
        bias = layer.conv.bias
    elif isinstance(layer, L.Conv2D):
        out = [(layer.conv.weight, lambda t: t.permute(2, 3, 1, 0), lambda t: t.permute(3, 2, 0, 1))]
        bias = layer.conv.bias
    elif isinstance(layer, L.Conv1D):  # torch (out, in, k) <-> Keras (k, in, out)
        out = [(layer.conv.weight, lambda t: t.permute(2, 1, 0), lambda t: t.permute(2, 1, 0))]
        bias = layer.conv.bias
    elif isinstance(layer, L.LSTM):  # torch's gate order i, f, g, o is Keras's i, f, c, o
        out = [(layer.weight_ih, lambda t: t.T, lambda t: t.T),
               (layer.weight_hh, lambda t: t.T, lambda t: t.T)]
        bias = layer.bias
    elif isinstance(layer, L.GRU):  # torch's gates r, z, n <-> Keras's z, r, h
        out = [(layer.weight_ih, lambda t: _swap_zr(t, 0).T, lambda t: _swap_zr(t.T, 0)),
               (layer.weight_hh, lambda t: _swap_zr(t, 0).T, lambda t: _swap_zr(t.T, 0))]
        if layer.bias is not None:  # (2, 3 * units): input bias, recurrent bias
            out.append((layer.bias, lambda t: _swap_zr(t, 1), lambda t: _swap_zr(t, 1)))
        return out
    else:
        return [(w, same, same) for w in _weights_of(layer)]
    return out + ([(bias, same, same)] if bias is not None else [])


def _call(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # a nested Sequential gets x in the outer (internal) layout: no second NHWC permute
    return layer(x, nested=True) if isinstance(layer, Sequential) else layer(x)


def _swap_zr(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Swap the first two of three gate blocks along ``dim`` (its own inverse)."""
    a, b, c = t.chunk(3, dim)
    return torch.cat([b, a, c], dim)


def _keras_loss(loss: Any) -> Any:
    """At the Keras front a plain function takes Keras's ``(y_true, y_pred)``; torch loss
    modules and ``torch.nn.functional`` functions keep torch's ``(input, target)``."""
    fn = loss.func if isinstance(loss, functools.partial) else loss
    if (callable(loss) and not isinstance(loss, (str, nn.Module, losses.Loss))
            and not (getattr(fn, "__module__", None) or "").startswith("torch")):
        return losses.LossFunctionWrapper(loss)
    return loss


def _weights_of(module: nn.Module) -> list[torch.Tensor]:
    """A module's weights in Keras's order and count: parameters, then floating-point
    buffers (BatchNorm: gamma, beta, moving mean, moving variance; not num_batches_tracked);
    a nested Sequential's layer by layer."""
    if isinstance(module, Sequential):
        return [w for layer in module.layers for w in _weights_of(layer)]
    return [*module.parameters(), *(b for b in module.buffers() if b.is_floating_point())]


def _count_weights(module: nn.Module) -> int:
    return sum(w.numel() for w in _weights_of(module))


def _compile_config(optimizer, loss, metrics) -> dict | None:
    """The compile arguments, when they can be written as JSON (names or configs)."""

    def enc(v):
        if v is None or isinstance(v, str):
            return v
        if hasattr(v, "get_config"):
            return {"class": type(v).__name__, "config": v.get_config()}
        raise TypeError

    try:
        cfg = {
            "optimizer": enc(optimizer),
            "loss": enc(loss) if isinstance(loss, str) else None,
            "metrics": [m for m in metrics if isinstance(m, str)] if metrics else None,
        }
        json.dumps(cfg)
        return cfg
    except TypeError:
        return None


def clone_model(model: Sequential) -> Sequential:
    """A new model with the same architecture and newly initialised weights (Keras
    ``keras.models.clone_model``); not compiled. Raises ``TypeError`` for anything but a
    ``brisk.Sequential`` of brisk layers (``copy.deepcopy`` copies any module, weights
    included)."""
    if not isinstance(model, Sequential):
        raise TypeError(f"model: clone_model takes a brisk.Sequential, got {type(model).__name__}; "
                        "use copy.deepcopy for other modules")
    return Sequential.from_config(model.get_config())


def load_model(path: str | os.PathLike, compile: bool = True) -> Sequential:
    """Load a model written by ``Sequential.save``; compiled again when it was compiled.
    Raises ``FileNotFoundError`` naming the file; ``ValueError`` naming it when it is
    truncated or corrupt (its checksum does not match), not a brisk model file, or its
    config is invalid or does not match its weights.

    Example::

        model.save("mlp.safetensors")
        same = brisk.load_model("mlp.safetensors")
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_model: no such file {path!r}")
    source = f"load_model: {path!r}"
    # Verified first (the checksum covers the config too), so a corrupt file says so
    # rather than failing on a garbled config; reading it takes the file's size in memory.
    tensors, meta = load_safetensors(path, source, "brisk model file")
    if meta.get("brisk") == "weights":
        raise ValueError(f"load_model: {path!r} is a weights file (save_weights), without the "
                         "architecture: build the model and call load_weights")
    if "brisk" not in meta:
        raise ValueError(f"load_model: {path!r} has no brisk model config")
    try:
        config = json.loads(meta["brisk"])
    except ValueError as e:
        raise ValueError(f"load_model: {path!r} has a corrupt model config ({e})") from e
    if not isinstance(config, dict) or config.get("format") != FORMAT or not isinstance(
            config.get("version", 0), int) or config.get("version", 0) > FORMAT_VERSION:
        fmt = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise ValueError(f"load_model: {path!r} has unsupported format {fmt!r}")
    # The config is checked against the file before any model weight is allocated: built
    # on the meta device (no memory), its weight shapes must be exactly the file's, which
    # the file's own size bounds (safetensors checks the header's offsets against it).
    try:
        with torch.device("meta"):
            skeleton = Sequential.from_config(config)
        want = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as e:
        raise ValueError(f"load_model: {path!r} has an invalid model config "
                         f"({type(e).__name__}: {e})") from e
    have = {k: tuple(v.shape) for k, v in tensors.items()}
    if want != have:
        bad = sorted(set(want) ^ set(have)) or [k for k in want if want[k] != have[k]]
        raise ValueError(f"load_model: {path!r}: the config does not match the weights in the "
                         f"file (first differences: {bad[:3]})")
    try:
        model = Sequential.from_config(config)
        model.load_state_dict(tensors)
    except Exception as e:
        raise ValueError(f"{source}: corrupt weights ({type(e).__name__}: {e})") from e
    if compile:
        try:
            compile_as_saved(model, config.get("compile"))
        except ValueError as e:
            raise ValueError(f"load_model: {path!r} has {e}") from e
    return model


def compile_as_saved(model: Sequential, settings: Any) -> None:
    """``model.compile`` with the settings ``get_config()`` saved (nothing when there are
    none). Raises ``ValueError('invalid compile settings (...)')`` for settings that do not
    compile (``load_model`` and ``brisk.compress.load`` name the file)."""
    if not isinstance(settings, dict) or not settings.get("loss"):
        return
    try:
        opt = settings["optimizer"]
        if isinstance(opt, dict):
            from brisk.optim import registry

            opt = registry.get(opt["config"])  # the config names its optimizer
        model.compile(optimizer=opt, loss=settings["loss"], metrics=settings.get("metrics"))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"invalid compile settings ({type(e).__name__}: {e})") from e


