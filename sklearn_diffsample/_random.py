"""Random-state coercion for the pure-function modules (metrics, datasets)."""

import numpy as np
from sklearn.utils import check_random_state

__all__ = ["as_random_state"]


def as_random_state(random_state):
    """RandomState from None, an int, a RandomState or a numpy Generator."""
    if isinstance(random_state, np.random.Generator):
        # Seeding from the Generator keeps the call reproducible from its state.
        return np.random.RandomState(random_state.integers(2**32, dtype=np.uint64))
    return check_random_state(random_state)
