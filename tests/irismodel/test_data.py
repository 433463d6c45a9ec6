"""Iris data: loading, binarizing and splitting work, and every bad data file is a named error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from irismodel.data import (
    BUNDLED,
    FEATURE_COLUMNS,
    Dataset,
    binarize,
    check_data_path,
    load_dataset,
    split_dataset,
)

COLUMNS_HINT = r"expected columns sepal_length, sepal_width, petal_length, petal_width and a label"


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return load_dataset()


@pytest.fixture(scope="module")
def iris_frame(dataset) -> pd.DataFrame:
    frame = pd.DataFrame(dataset.features, columns=list(FEATURE_COLUMNS))
    frame["species"] = [dataset.class_names[i] for i in dataset.labels]
    return frame


def _write(frame: pd.DataFrame, path) -> str:
    if str(path).endswith(".csv"):
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return str(path)


def test_bundled_iris_has_150_rows_and_versicolor_is_index_1(dataset):
    """The bundled data is Iris: 150 rows of 4 float32 features, versicolor is class 1."""
    assert dataset.features.shape == (150, 4) and dataset.features.dtype == np.float32
    assert dataset.labels.dtype == np.int64
    assert dataset.class_names == ("setosa", "versicolor", "virginica")
    assert np.bincount(dataset.labels).tolist() == [50, 50, 50]
    assert dataset.source == BUNDLED
    targets, name = binarize(dataset, "versicolor")
    assert name == "versicolor"
    np.testing.assert_array_equal(targets, (dataset.labels == 1).astype(np.float32))


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".pq"])
def test_a_file_with_the_same_rows_gives_the_same_dataset(tmp_path, dataset, iris_frame, suffix):
    """CSV and Parquet files holding Iris load to the bundled rows, classes and fingerprint."""
    loaded = load_dataset(_write(iris_frame, tmp_path / f"iris{suffix}"))
    np.testing.assert_array_equal(loaded.features, dataset.features)
    np.testing.assert_array_equal(loaded.labels, dataset.labels)
    assert loaded.class_names == dataset.class_names
    assert loaded.fingerprint() == dataset.fingerprint()
    assert loaded.source == str(tmp_path / f"iris{suffix}")


def test_integer_label_codes_become_class_names(tmp_path, dataset, iris_frame):
    """A label column of integer codes loads with the codes as class names, in order."""
    frame = iris_frame.drop(columns="species").assign(target=dataset.labels)
    loaded = load_dataset(_write(frame, tmp_path / "codes.csv"))
    assert loaded.class_names == ("0", "1", "2")
    np.testing.assert_array_equal(loaded.labels, dataset.labels)


@pytest.mark.parametrize("positive_class", ["versicolor", 1, "1"])
def test_positive_class_by_name_or_index(dataset, positive_class):
    """The positive class may be given by name or by index (also as a string of digits)."""
    split = split_dataset(dataset, positive_class, test_size=0)
    assert split.positive_class == "versicolor"
    assert split.y_train.sum() == 50


def test_stratified_split_sizes(dataset):
    """test_size 0.25 splits 150 rows into 112 training and 38 test rows, stratified."""
    split = split_dataset(dataset, "versicolor", test_size=0.25, split_seed=0)
    assert (len(split.y_train), len(split.y_test)) == (112, 38)
    assert split.x_train.shape == (112, 4) and split.x_test.shape == (38, 4)
    assert split.x_train.dtype == split.y_train.dtype == np.float32
    assert (split.y_train.sum(), split.y_test.sum()) == (37, 13)  # a third of each side
    assert split.data_fingerprint == dataset.fingerprint()


def test_split_is_seeded(dataset):
    """The same split_seed gives the same split; another gives another."""
    a, b = split_dataset(dataset, split_seed=3), split_dataset(dataset, split_seed=3)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, split_dataset(dataset, split_seed=4).x_train)


def test_test_size_zero_trains_on_every_row(dataset):
    """test_size 0 keeps all 150 rows for training, in order, and no test rows (the notebook)."""
    split = split_dataset(dataset, test_size=0)
    assert len(split.y_train) == 150 and len(split.y_test) == 0
    assert split.x_test.shape == (0, 4)
    np.testing.assert_array_equal(split.x_train, dataset.features)


def test_standardization_is_fitted_on_training_rows_only(dataset):
    """Standardized training rows have mean 0 and std 1; test rows use the training statistics."""
    raw = split_dataset(dataset, test_size=0.25, split_seed=0)
    scaled = split_dataset(dataset, test_size=0.25, split_seed=0, standardize=True)
    np.testing.assert_allclose(scaled.x_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(scaled.x_train.std(axis=0), 1, atol=1e-5)
    mean, std = raw.x_train.mean(axis=0), raw.x_train.std(axis=0)
    np.testing.assert_allclose(scaled.x_test, (raw.x_test - mean) / std, rtol=1e-5, atol=1e-6)
    assert np.abs(scaled.x_test.mean(axis=0)).max() > 1e-3  # not refitted on the test rows


# Each bad data file: (how to make it from the Iris frame, file suffix, expected message)
def _drop_feature(frame):
    return frame.drop(columns="petal_width")


def _drop_label(frame):
    return frame.drop(columns="species")


def _text_feature(frame):
    frame = frame.astype({"sepal_width": str})
    frame.loc[3, "sepal_width"] = "wide"
    return frame


def _nan_feature(frame):
    frame = frame.copy()
    frame.loc[7, "petal_length"] = np.nan
    return frame


def _inf_feature(frame):
    frame = frame.copy()
    frame.loc[9, "sepal_length"] = np.inf
    return frame


def _missing_label(frame):
    frame = frame.copy()
    frame.loc[5, "species"] = None
    return frame


def _header_only(frame):
    return frame.head(0)


def _fractional_codes(frame):
    return frame.drop(columns="species").assign(label=np.linspace(0, 2, len(frame)))


BAD_FILES = {
    "no feature column": (
        _drop_feature,
        ".csv",
        rf"data_path: .* has no feature column 'petal_width'; {COLUMNS_HINT}",
    ),
    "no label column": (
        _drop_label,
        ".parquet",
        rf"data_path: .* has no label column; {COLUMNS_HINT}",
    ),
    "non-numeric feature": (
        _text_feature,
        ".parquet",
        r"data_path: feature column\(s\) 'sepal_width' of .* are not numeric",
    ),
    "text in a CSV feature": (
        _text_feature,
        ".csv",
        r"data_path: feature column\(s\) 'sepal_width' of .* are not numeric",
    ),
    "NaN feature": (
        _nan_feature,
        ".csv",
        r"data_path: .* has NaN or infinite features in 1 row\(s\), first at row 7",
    ),
    "infinite feature": (_inf_feature, ".parquet", r"data_path: .* NaN or infinite .* row 9"),
    "missing label": (_missing_label, ".parquet", r"data_path: label column 'species' .* missing"),
    "header only": (_header_only, ".csv", r"data_path: .* has no data rows"),
    "fractional label codes": (
        _fractional_codes,
        ".csv",
        r"data_path: label column 'label' .* class names or integer codes",
    ),
}


@pytest.mark.parametrize(("make", "suffix", "message"), BAD_FILES.values(), ids=list(BAD_FILES))
def test_bad_data_file_is_refused_by_name(tmp_path, iris_frame, make, suffix, message):
    """A data file with missing columns or bad values raises ValueError naming data_path."""
    path = _write(make(iris_frame), tmp_path / f"data{suffix}")
    with pytest.raises(ValueError, match=message):
        load_dataset(path)


def test_missing_file_is_refused(tmp_path):
    """A data_path that does not exist is refused by name."""
    with pytest.raises(ValueError, match=r"data_path: no such file '.*absent\.csv'"):
        load_dataset(str(tmp_path / "absent.csv"))


def test_folder_is_refused(tmp_path):
    """A data_path that is a folder is refused as not a file."""
    (tmp_path / "iris.csv").mkdir()
    with pytest.raises(ValueError, match=r"data_path: '.*iris\.csv' is not a file"):
        check_data_path(str(tmp_path / "iris.csv"))


@pytest.mark.parametrize("name", ["iris.xlsx", "iris.json", "iris"])
def test_unsupported_format_is_refused(tmp_path, name):
    """A file of another format is refused, listing the supported ones."""
    (tmp_path / name).write_text("{}")
    with pytest.raises(
        ValueError, match=r"data_path: unsupported format .* supported are \.csv, \.parquet, \.pq"
    ):
        load_dataset(str(tmp_path / name))


@pytest.mark.parametrize("content", [b"", b"PAR1 not really parquet", b"\x00\xff" * 50])
def test_unreadable_file_is_refused(tmp_path, content):
    """An empty or corrupt file is a data_path error naming the file, not a reader traceback."""
    for name in ("data.parquet", "data.csv"):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=rf"data_path: .*{name}"):
            load_dataset(str(tmp_path / name))


def test_fewer_rows_than_the_split_needs(tmp_path, iris_frame):
    """Too few rows of a class for a train/test split is refused, naming the counts."""
    tiny = iris_frame.iloc[[0, 50, 51]]  # 1 setosa, 2 versicolor
    dataset = load_dataset(_write(tiny, tmp_path / "tiny.csv"))
    with pytest.raises(
        ValueError, match=r"data_path: .* has 3 rows, 2 of class 'versicolor' and 1 of the rest; "
    ):
        split_dataset(dataset, "versicolor", test_size=0.25)
    four = iris_frame.iloc[[0, 1, 50, 51]]
    dataset = load_dataset(_write(four, tmp_path / "four.csv"))
    with pytest.raises(ValueError, match=r"test_size: 0\.25 cannot split 4 rows .* choose a"):
        split_dataset(dataset, "versicolor", test_size=0.25)
    assert split_dataset(dataset, "versicolor", test_size=0).y_train.tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize("test_size", [0.99, 0.995])
def test_test_size_leaving_no_training_row_of_a_class(dataset, test_size):
    """A test_size so large that a class has no training row is refused by name."""
    with pytest.raises(ValueError, match=rf"test_size: {test_size} cannot split 150 rows"):
        split_dataset(dataset, "versicolor", test_size=test_size)


def test_single_class_after_binarization(tmp_path, iris_frame):
    """Data holding only the positive class is refused: both classes are needed."""
    setosa = load_dataset(_write(iris_frame.iloc[:50], tmp_path / "setosa.parquet"))
    with pytest.raises(
        ValueError, match=r"positive_class: after binarizing by 'setosa' .* holds a single class"
    ):
        split_dataset(setosa, "setosa")


@pytest.mark.parametrize("positive_class", ["rose", "Versicolor", 3, -1, "7", True])
def test_positive_class_not_in_the_data(dataset, positive_class):
    """A positive class that is neither a class name nor an index is refused, listing both."""
    with pytest.raises(
        ValueError,
        match=r"positive_class: .* is not a class of the data; valid are the names setosa, "
        r"versicolor, virginica or an index 0\.\.2",
    ):
        split_dataset(dataset, positive_class)
