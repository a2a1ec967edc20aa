"""fedtrain.io: plain JSON-like values and strict JSON text."""

import json
import math
from pathlib import Path

import numpy as np
import torch

from fedtrain.io import to_json, to_plain


def test_to_plain_turns_containers_arrays_and_non_finite_numbers_into_json_values():
    value = {"shape": (1, 28, 28), 3: [np.float64(0.5), torch.tensor([1, 2])], "bad": math.inf, "nan": [float("nan")],
             "path": Path("/tmp/x"), "array": np.arange(3).reshape(1, 3)}
    assert to_plain(value) == {"shape": [1, 28, 28], "3": [0.5, [1, 2]], "bad": None, "nan": [None], "path": "/tmp/x",
                               "array": [[0, 1, 2]]}
    assert json.loads(to_json(value)) == to_plain(value)
