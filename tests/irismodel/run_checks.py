"""Assertions shared by the engine tests: two training runs equal bit for bit or to rounding."""

import numpy as np

from irismodel.engine import TrainingRun
from irismodel.model import PARAMETER_NAMES


def assert_runs_equal(actual: TrainingRun, expected: TrainingRun, exact: bool = True) -> None:
    """Loss curves and final weights equal: bit for bit, or else to float32 rounding."""
    if exact:
        check = np.testing.assert_array_equal
    else:

        def check(a, b):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    check(actual.loss_curves, expected.loss_curves)
    for name in PARAMETER_NAMES:
        check(actual.parameters[name], expected.parameters[name])
