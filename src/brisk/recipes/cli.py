"""``brisk train --recipe NAME``: the plain function behind the flag.

Example::

    from brisk.recipes.cli import run_recipe_from_args
    run_recipe_from_args("mnist-cnn", data_dir="../shared/data", device=None, epochs=None,
                         seed=0, out="runs/mnist-cnn")      # prints accuracy and seconds; 0
"""

from __future__ import annotations

import json
import os

from brisk.recipes.registry import get, run


def run_recipe_from_args(
    recipe: str,
    data_dir: str | None = None,
    device: str | None = None,
    epochs: int | None = None,
    seed: int = 0,
    out: str | None = None,
) -> int:
    """Train recipe ``recipe``, print its test accuracy and training seconds, and return 0.

    ``epochs`` overrides the recipe's (None keeps it). With ``out`` (a folder, as for
    ``brisk train --out``) writes ``model.safetensors`` (load it with ``brisk.load_model``)
    and ``result.json`` there. An unknown name is a ValueError listing the known recipes
    and the closest ones.

    Example::

        run_recipe_from_args("mnist-mlp", data_dir="../shared/data", epochs=1, out="runs/mlp")
    """
    rec = get(recipe)  # fails fast on a misspelt name, before any data is read
    if out is not None and os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"out: {out!r} exists and is not a folder")
    result = run(rec.name, data_dir=data_dir, device=device, seed=seed, epochs=epochs)
    model = result.pop("model")
    acc, secs = result["test_accuracy"], result["train_seconds"]
    mark = "reached" if result["reached_target"] else "missed"
    print(f"recipe {rec.name}: test accuracy {acc:.4f} ({mark} target {rec.target:.2%}) "
          f"after {result['epochs']} epoch(s)")
    print(f"training time: {secs:.2f} s  ({result['samples_per_second']:.0f} samples/s on "
          f"{result['device']})")
    if out is not None:
        os.makedirs(out, exist_ok=True)
        model.save(os.path.join(out, "model.safetensors"))
        with open(os.path.join(out, "result.json"), "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {out}/model.safetensors, result.json")
    return 0
