"""``algoperf.spec`` as published submissions use it: type names, enums and the error class.

python -m pytest tests/test_submission_file.py
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from algoperf_torch.spec import (  # noqa: F401  (re-exported names)
    ForwardPassMode,
    LossType,
    ParameterType,
    ShapeTuple,
    TrainingCompleteError,
)
from algoperf_torch.workload import Workload  # noqa: F401

Tensor = torch.Tensor
ParameterContainer = Any
ParameterTypeTree = dict[str, ParameterType]
ParameterShapeTree = dict[str, ShapeTuple]
ModelAuxiliaryState = Any
Hyperparameters = Any
OptimizerState = Any
RandomState = np.ndarray | list
UpdateReturn = tuple[OptimizerState, ParameterContainer, ModelAuxiliaryState]
Steps = int
Seconds = float
DataSelectionFn = Callable[..., dict[str, Any]]
InputQueue = Iterator[dict[str, Any]]
LossFn = Callable[..., dict[str, Tensor]]
