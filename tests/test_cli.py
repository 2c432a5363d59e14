"""``python -m sklearn_diffsample``: the sample command and its error paths."""

import os
import stat
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from sklearn_diffsample.__main__ import main, read_table


@pytest.fixture
def data_csv(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 2)) * [1.0, 3.0]
    path = tmp_path / "data.csv"
    np.savetxt(path, X, delimiter=",", header="height,weight", comments="")
    return path, X


def _run(args, capsys):
    code = main(args)
    return code, capsys.readouterr().err


def test_sample_writes_csv_with_the_input_header(data_csv, tmp_path, capsys):
    path, X = data_csv
    out = tmp_path / "out.csv"
    code, err = _run(["sample", "--method", "guided", "--input", str(path), "--n", "50",
                      "--output", str(out), "--bandwidth", "0.3", "--quiet"], capsys)
    assert code == 0, err
    assert out.read_text().splitlines()[0] == "height,weight"
    written, names = read_table(out)
    assert names == ["height", "weight"] and written.shape == (50, 2)
    # A guided sample at bandwidth 0.3 stays within the data's range, widened.
    assert np.all(np.abs(written - X.mean(0)) < 6 * X.std(0) + 1.5)


def test_sample_npy_round_trip_and_cross_validated_bandwidth(tmp_path, capsys):
    X = np.random.default_rng(1).normal(size=(90, 3))
    src, out = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(src, X)
    code, err = _run(["sample", "--method", "guided", "--input", str(src), "--n", "7",
                      "--output", str(out), "--cv", "3", "--quiet"], capsys)
    assert code == 0, err
    assert "cross-validated bandwidth" in err
    assert np.load(out).shape == (7, 3)


def test_cv_search_of_path_extrapolation_caches_its_endpoints_for_the_search(
        tmp_path, monkeypatch):
    from sklearn.model_selection import GridSearchCV

    from sklearn_diffsample import PathExtrapolationDensity
    from sklearn_diffsample.__main__ import _bandwidth_search, bandwidth_grid

    X = np.random.default_rng(3).normal(size=(45, 2))
    fast = dict(random_state=0, n_steps=8, n_splits=1, n_reference_samples=100)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    search = _bandwidth_search(PathExtrapolationDensity, fast, X, 3)
    reference = GridSearchCV(PathExtrapolationDensity(**fast), {"bandwidth": bandwidth_grid()},
                             cv=3).fit(X)
    # The cache changes the cost, not the scores; it is gone after the search.
    assert search.estimator.memory is not None
    np.testing.assert_allclose(search.cv_results_["mean_test_score"],
                               reference.cv_results_["mean_test_score"], rtol=1e-12)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("grid, edge", [((0.001, 0.002), "largest"),
                                        ((1.0, 2.0), "smallest"),
                                        ((0.002, 0.1, 3.0), None)])
def test_cv_warns_when_it_chooses_an_end_of_the_grid(monkeypatch, capsys, grid, edge):
    from argparse import Namespace

    import sklearn_diffsample.__main__ as cli

    # Two tight clusters: the held-out likelihood peaks near 0.1 standard deviations.
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(-3.0, 0.5, size=(30, 2)), rng.normal(3.0, 0.5, size=(30, 2))])
    monkeypatch.setattr(cli, "bandwidth_grid", lambda: np.asarray(grid))
    params = dict(random_state=0, n_steps=3)
    cli._fit_and_sample(cli._estimator_class("guided"), params, X,
                        Namespace(cv=3, n=2, random_state=0))
    err = capsys.readouterr().err
    if edge is None:
        assert params["bandwidth"] == 0.1 and "warning" not in err
    else:
        assert f"the cross-validated bandwidth is the grid's {edge} value" in err


def test_the_cli_grid_holds_the_optima_of_higher_dimensional_tables():
    # Wine (13-D) and breast cancer (30-D) peak at about 0.9 and 1.3 data
    # standard deviations: inside the grid, not on its last value.
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import GridSearchCV, KFold

    from sklearn_diffsample import GuidedDiffusionSampler
    from sklearn_diffsample.__main__ import bandwidth_grid

    X = load_breast_cancer().data
    grid = bandwidth_grid()
    search = GridSearchCV(GuidedDiffusionSampler(n_steps=2), {"bandwidth": grid},
                          cv=KFold(3, shuffle=True, random_state=0)).fit(X)
    assert 0.9 < search.best_params_["bandwidth"] < grid[-1]


@pytest.mark.parametrize("content, message", [
    ("a,b\n1,2\n3,x\n", "column 2 ('b'): 'x' is not a number"),
    ("1,2\n3\n", "has 1 columns, expected 2"),
    ("1,2\n3,nan\n", "row 2, column 2 is not finite"),
    ("", "is empty"),
    ("a,b\n1,2\n", "at least 2 are needed"),
])
def test_bad_csv_files_fail_cleanly_and_write_nothing(tmp_path, capsys, content, message):
    src, out = tmp_path / "bad.csv", tmp_path / "out.csv"
    src.write_text(content)
    code, err = _run(["sample", "--method", "guided", "--input", str(src), "--n", "5",
                      "--output", str(out), "--quiet"], capsys)
    assert code == 2
    assert message in err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.csv"]  # no temporary left


def test_bad_paths_and_arguments(tmp_path, data_csv, capsys):
    path, _ = data_csv
    cases = [
        (["--input", str(tmp_path / "missing.csv"), "--output", str(tmp_path / "o.csv")],
         "does not exist"),
        (["--input", str(path), "--output", str(tmp_path / "nowhere" / "o.csv")],
         "output folder"),
        (["--input", str(path), "--output", str(tmp_path / "o.parquet")],
         "unsupported output type"),
        (["--input", str(path), "--output", str(tmp_path / "o.csv"), "--bandwidth", "-1"],
         "'-1' is not a finite number > 0"),
    ]
    for extra, message in cases:
        code, err = _run(["sample", "--method", "guided", "--n", "3", "--quiet", *extra], capsys)
        assert code == 2 and message in err, (extra, err)
    np.save(tmp_path / "obj.npy", np.array([["a", "b"], ["c", "d"]]))
    code, err = _run(["sample", "--method", "guided", "--input", str(tmp_path / "obj.npy"),
                      "--n", "3", "--output", str(tmp_path / "o.npy")], capsys)
    assert code == 2 and "2-D numeric array" in err
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "o.npy").exists()


def test_module_entry_point_reports_usage_errors():
    proc = subprocess.run([sys.executable, "-m", "sklearn_diffsample", "sample", "--method",
                           "nope"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr


@pytest.mark.parametrize("extra, message", [
    (["--bandwidth", "nan"], "'nan' is not a finite number > 0"),
    (["--bandwidth", "inf"], "'inf' is not a finite number > 0"),
    (["--random-state", "-1"], "'-1' is not an integer >= 0"),
    (["--n", "-3"], "'-3' is not an integer >= 0"),
    (["--cv", "1"], "'1' is not an integer >= 2"),
    (["--method", "mmsold", "--bandwidth", "1e-300"], "is outside 1e-100 to 1e+06"),
    (["--output", "{tmp}"], "is a folder"),
    (["--input", "{tmp}"], "is a folder, not a file"),
    (["--cv", "5", "--input", "{four}"], "--cv 5 needs at least 5 data rows"),
    (["--frobnicate"], "unrecognized arguments"),
])
def test_every_user_error_is_one_line_with_exit_status_2(tmp_path, data_csv, capsys, extra,
                                                        message):
    path, _ = data_csv
    four = tmp_path / "four.csv"
    np.savetxt(four, np.random.default_rng(0).normal(size=(4, 2)), delimiter=",")
    out = tmp_path / "out.csv"
    args = {"--method": "guided", "--input": str(path), "--n": "5", "--output": str(out)}
    extra = [e.format(tmp=tmp_path, four=four) for e in extra]
    for flag, value in zip(extra[::2], extra[1::2]):
        if flag in args:
            args[flag] = value
            extra = [e for e in extra if e not in (flag, value)]
    argv = ["sample", "--quiet", *[x for kv in args.items() for x in kv], *extra]
    code, err = _run(argv, capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not out.exists()


def test_an_unwritable_folder_is_reported_before_the_fit(tmp_path, data_csv, capsys,
                                                         monkeypatch):
    path, _ = data_csv
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    # Root may write anywhere, so the refusal is simulated where it is felt.
    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    code, err = _run(["sample", "--method", "guided", "--input", str(path), "--n", "3",
                      "--output", str(tmp_path / "o.csv"), "--quiet"], capsys)
    assert code == 2 and "cannot write to the folder" in err and "Permission denied" in err
    assert not (tmp_path / "o.csv").exists()


def test_the_output_file_gets_the_mode_of_a_plain_open(tmp_path, data_csv, capsys):
    path, _ = data_csv
    old = os.umask(0o022)
    try:
        code, err = _run(["sample", "--method", "guided", "--input", str(path), "--n", "3",
                          "--output", str(tmp_path / "o.csv"), "--quiet"], capsys)
        plain = tmp_path / "plain.csv"
        with open(plain, "w"):
            pass
    finally:
        os.umask(old)
    assert code == 0, err
    assert stat.S_IMODE((tmp_path / "o.csv").stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
