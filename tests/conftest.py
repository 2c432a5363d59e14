"""Session-wide fixtures.

pynndescent compiles with numba on first use (about a minute of CPU per
process), so the suite builds one approximate index per session and shares it.
"""

import os

# scikit-learn's array-API check (NumPy inputs with dispatch on) runs only when
# scipy is imported with this set; otherwise it is skipped, not passed.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from sklearn_diffsample._neighbors import PatternIndex  # noqa: E402


@pytest.fixture(scope="session")
def ann_data():
    rng = np.random.default_rng(20261122)
    return rng.normal(size=(3000, 12))


@pytest.fixture(scope="session")
def ann_index(ann_data):
    """One fitted pynndescent PatternIndex for the whole test session."""
    return PatternIndex(algorithm="nndescent", random_state=7).fit(ann_data)
