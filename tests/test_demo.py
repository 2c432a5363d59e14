"""The README's main job: ``python -m sklearn_diffsample demo`` (quick mode)."""

import numpy as np

from sklearn_diffsample.demo import run_demo


def test_quick_demo_writes_its_table_and_figure(tmp_path, capsys):
    figure = tmp_path / "demo.png"
    results = run_demo(output=str(figure), quick=True, random_state=0)
    out = capsys.readouterr().out
    assert figure.stat().st_size > 10_000  # a rendered PNG, not an empty file
    for name in results:
        assert f"| {name} |" in out
    rows = {name: row for name, (_, row) in results.items()}
    # The guided sampler's law at bandwidth h is the KDE of bandwidth h.
    assert abs(rows["GuidedDiffusionSampler"]["held-out log-lik"]
               - rows["KernelDensity (CV)"]["held-out log-lik"]) < 1e-8
    for name, (samples, row) in results.items():
        assert samples.shape == (800, 2) and np.all(np.isfinite(samples)), name
        assert np.isfinite(row["held-out log-lik"])
        # Every method adds continuous noise to its kernel centres: no sample
        # may coincide with a training row.
        assert row["copy rate"] == 0.0, name
