"""The pre-flight of a run: parameters, resume, data and forecast checked once, before any work."""

import pandas as pd
import pytest

from irismodel import store
from irismodel.data import FEATURE_COLUMNS, load_dataset
from irismodel.parameters import SweepConfig
from irismodel.preflight import check_data, handed_over, preflight, run_label, run_tags
from irismodel.store.lock import release_lock

TINY = dict(hidden_dims=[8, 9], optimizers=["sgd"], split_seeds="0..1", seeds="0..3", epochs=20)


def _write_iris(path, rows=slice(None)) -> str:
    iris = load_dataset()
    frame = pd.DataFrame(iris.features, columns=list(FEATURE_COLUMNS))
    frame["species"] = [iris.class_names[i] for i in iris.labels]
    frame.iloc[rows].to_csv(path, index=False)
    return str(path)


def test_a_run_is_checked_with_its_data_split_and_its_cost_forecast(tmp_path):
    """The pre-flight gives the validated parameters, every split of the data and the forecast;
    nothing is written."""
    output = tmp_path / "out"
    given = {**TINY, "output_dir": str(output), "device": "cpu"}
    checked = preflight(given)
    assert checked.given == given
    assert checked.config == SweepConfig(**given)
    assert sorted(checked.splits) == [0, 1]
    assert len(checked.splits[0].y_train) + len(checked.splits[0].y_test) == 150
    assert checked.forecast.models == 2 * 2 * 4
    assert not output.exists()


# (parameters, pattern naming the parameter and what would be valid); "{dir}": the test's folder
BAD_DATA = {
    "data_path missing": ({"data_path": "{dir}/absent.csv"}, r"data_path: no such file"),
    "data_path unsupported": (
        {"data_path": "{dir}/iris.xlsx"},
        r"data_path: unsupported format '\.xlsx'.*supported are \.csv, \.parquet, \.pq",
    ),
    "data_path blank": (
        {"data_path": "   "},
        r"data_path: expected a CSV or Parquet file \(\.csv, \.parquet, \.pq\), got '   '",
    ),
    "data_path a folder": (
        {"data_path": "{dir}"},
        r"data_path: '.*' is a folder; expected a CSV or Parquet file \(\.csv, \.parquet, \.pq\)",
    ),
    "positive_class unknown": (
        {"positive_class": "rose"},
        r"positive_class: 'rose' is not a class of the data",
    ),
    "test_size leaving no training row": (
        {"test_size": 0.995},
        r"test_size: 0\.995 cannot split 150 rows",
    ),
    "a single class": (
        {"data_path": "{dir}/setosa.csv", "positive_class": "setosa"},
        r"positive_class: after binarizing by 'setosa' .* single class",
    ),
}


@pytest.mark.parametrize(("parameters", "message"), BAD_DATA.values(), ids=list(BAD_DATA))
def test_data_that_cannot_make_the_run_is_refused_by_name(tmp_path, parameters, message):
    """Data that is missing, no CSV or Parquet file, or cannot give the splits is refused,
    naming the parameter; nothing is written."""
    _write_iris(tmp_path / "setosa.csv", slice(0, 50))
    output = tmp_path / "out"
    given = {k: v.format(dir=tmp_path) if isinstance(v, str) else v for k, v in parameters.items()}
    with pytest.raises(ValueError, match=message):
        preflight({**TINY, "output_dir": str(output), **given})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["setosa.csv"]


def test_check_data_returns_the_first_split(tmp_path):
    """check_data reads the data and gives the first split of the run."""
    split = check_data(SweepConfig(output_dir=str(tmp_path)))
    assert (len(split.y_train), len(split.y_test)) == (112, 38)


def test_a_check_handed_over_is_the_run_s_for_the_same_parameters_only(tmp_path):
    """Inside `handed_over`, the same parameters give the check made before, not a new one;
    other parameters are checked anew (and refused if bad); outside, every call checks."""
    given = {**TINY, "output_dir": str(tmp_path / "out")}
    checked = preflight(given)
    with handed_over(checked):
        assert preflight(dict(given)) is checked
        other = preflight({**given, "epochs": 30})
        assert other is not checked and other.config.epochs == 30
        with pytest.raises(ValueError, match=r"epochs: 0 is not allowed"):
            preflight({**given, "epochs": 0})
    assert preflight(given) is not checked


def test_a_resume_takes_its_run_s_parameters_and_the_force_given_not_the_stored_one(tmp_path):
    """A resume runs the stored parameters of its run; `force` is this attempt's: a stored
    true is not inherited, a given true holds."""
    output = str(tmp_path / "out")
    stored = SweepConfig(**TINY, learning_rate=0.05, force=True, output_dir=output)
    opened = store.open_run(stored, "killed")
    release_lock(opened.place)

    resumed = preflight({"output_dir": output, "resume": "killed"}).config
    assert (resumed.learning_rate, resumed.epochs, resumed.resume) == (0.05, 20, "killed")
    assert resumed.force is False
    assert preflight({"output_dir": output, "resume": "killed", "force": True}).config.force


def test_a_resume_on_changed_data_is_refused_before_any_work(tmp_path):
    """Resuming a run whose data file changed since it started is refused, naming the resume."""
    data = _write_iris(tmp_path / "iris.csv")
    output = str(tmp_path / "out")
    opened = store.open_run(SweepConfig(**TINY, data_path=data, output_dir=output), "first")
    release_lock(opened.place)
    _write_iris(tmp_path / "iris.csv", slice(0, 120))
    with pytest.raises(ValueError, match=r"resume: run first was started on other data"):
        preflight({"output_dir": output, "resume": "first"})


def test_a_run_is_named_and_tagged_after_what_it_sweeps(tmp_path):
    """The run's name says its sizes, rules, seeds and epochs; its tags the same and the device;
    a name is made even of parameters that will be refused."""
    assert run_label({**TINY, "optimizers": ["sgd", "adam"]}) == "h8-9_sgd+adam_s4_e20"
    assert run_label({}) == "h8-14_sgd+manual+manual-no-zero-grad_s400_e1000"
    assert run_label({"hidden_dims": [0], "epochs": "x"}) == "iris-sweep"
    config = SweepConfig(**TINY, device="cpu", output_dir=str(tmp_path))
    assert run_tags(config) == [
        "iris-sweep",
        "h8-9",
        "sgd",
        "seeds:4",
        "splits:2",
        "epochs:20",
        "cpu",
    ]
