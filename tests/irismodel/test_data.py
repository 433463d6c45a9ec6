"""Iris data: loading, binarizing and splitting work, and every bad data file is a named error."""

import re

import numpy as np
import pandas as pd
import pytest

from irismodel.data import (
    BUNDLED,
    FEATURE_COLUMNS,
    Dataset,
    binarize,
    load_dataset,
    positive_index,
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
    assert loaded.class_names == ("0", "1", "2") and loaded.integer_codes
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


@pytest.mark.parametrize("name", ["iris.csv", "data"])
def test_folder_is_refused(tmp_path, name):
    """A data_path that is a folder, with or without an extension, is refused as a folder."""
    (tmp_path / name).mkdir()
    with pytest.raises(
        ValueError, match=rf"data_path: '.*{name}' is a folder; expected a CSV or Parquet file"
    ):
        load_dataset(str(tmp_path / name))


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


# Values beyond float32: the finite check runs in float64, the model in float32.
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("huge", [1e39, -1e39, 1e300])
def test_features_beyond_float32_are_refused(tmp_path, iris_frame, suffix, huge):
    """A feature that is finite in float64 but inf in float32 is refused, naming the rows."""
    frame = iris_frame.astype({"petal_width": np.float64})
    frame.loc[[4, 20], "petal_width"] = huge
    path = _write(frame, tmp_path / f"data{suffix}")
    with pytest.raises(
        ValueError,
        match=r"data_path: '.*data\.(csv|parquet)' has feature values beyond float32's range "
        r"\(\|x\| > 3\.4e\+38\) in 2 row\(s\), first at row 4; the model trains in float32$",
    ):
        load_dataset(path)


def test_feature_at_float32_max_is_accepted(tmp_path, iris_frame):
    """The largest float32 itself is accepted and stays finite."""
    frame = iris_frame.astype({"sepal_length": np.float64})
    frame.loc[0, "sepal_length"] = float(np.finfo(np.float32).max)
    loaded = load_dataset(_write(frame, tmp_path / "edge.parquet"))
    assert np.isfinite(loaded.features).all()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize(
    ("bad", "shown"), [(np.inf, "inf"), (-np.inf, "-inf"), (1.5, "1.5"), (1e300, "1e+300")]
)
def test_numeric_label_that_is_not_an_integer_code(tmp_path, iris_frame, suffix, bad, shown):
    """An infinite, fractional or inexact numeric label is refused naming the label column."""
    codes = iris_frame["species"].map({"setosa": 1.0, "versicolor": 2.0, "virginica": 3.0})
    codes[5] = bad
    path = _write(iris_frame.assign(species=codes), tmp_path / f"data{suffix}")
    with pytest.raises(
        ValueError,
        match=rf"data_path: label column 'species' of '.*data\.(csv|parquet)' must hold class "
        rf"names or integer codes; found {re.escape(shown)} at row 5$",
    ):
        load_dataset(path)


# Integer label codes: an integer positive_class is a code, never an index.
@pytest.fixture
def coded(tmp_path, dataset, iris_frame) -> Dataset:
    """Iris labelled 1 (setosa), 2 (versicolor), 3 (virginica)."""
    frame = iris_frame.drop(columns="species").assign(target=dataset.labels + 1)
    return load_dataset(_write(frame, tmp_path / "coded.csv"))


@pytest.mark.parametrize(
    ("positive_class", "code"),
    [(1, 1), (2, 2), (3, 3), ("1", 1), ("3", 3), (" 2", 2), ("03", 3), (np.int64(3), 3)],
)
def test_integer_positive_class_is_the_label_code(coded, dataset, positive_class, code):
    """With codes 1, 2, 3 the positive class 1 is code 1 (setosa), 3 is code 3 (virginica)."""
    assert coded.integer_codes and coded.class_names == ("1", "2", "3")
    targets, name = binarize(coded, positive_class)
    assert name == str(code)
    np.testing.assert_array_equal(targets, (dataset.labels == code - 1).astype(np.float32))
    assert positive_index(coded, positive_class) == code - 1
    assert split_dataset(coded, positive_class, test_size=0).positive_class == str(code)


@pytest.mark.parametrize(
    ("positive_class", "shown"),
    [(0, "0"), (4, "4"), (-1, "-1"), ("0", "'0'"), ("setosa", "'setosa'"), (np.int64(0), "0")],
)
def test_positive_class_that_is_not_a_code(coded, positive_class, shown):
    """A positive class that is not one of the codes is refused, listing the codes."""
    with pytest.raises(
        ValueError,
        match=rf"^positive_class: {shown} is not a label of the data; its labels are the "
        r"integer codes 1, 2, 3$",
    ):
        split_dataset(coded, positive_class)


def test_bundled_names_keep_integer_as_index(dataset):
    """Class names are not codes: an integer stays an index into the sorted names."""
    assert dataset.integer_codes is False
    assert (
        Dataset(dataset.features, dataset.labels, dataset.class_names, "x").integer_codes is False
    )
    assert binarize(dataset, 1)[1] == binarize(dataset, np.int64(1))[1] == "versicolor"
    assert binarize(dataset, 0)[1] == "setosa"


@pytest.mark.parametrize("texts", [["1", "2", "3"], ["01", "02", "03"], [" 1", "2 ", "+3"]])
def test_integer_codes_written_as_text(tmp_path, dataset, iris_frame, texts):
    """A text column of integers is read as codes, as a CSV of the same would be."""
    frame = iris_frame.assign(species=[texts[i] for i in dataset.labels])
    loaded = load_dataset(_write(frame, tmp_path / "text.parquet"))
    assert loaded.integer_codes and loaded.class_names == ("1", "2", "3")
    assert binarize(loaded, 1)[1] == "1"
    with pytest.raises(ValueError, match=r"positive_class: 0 is not a label of the data"):
        binarize(loaded, 0)


def test_integer_codes_sort_numerically(tmp_path, iris_frame):
    """Codes 2, 10 and -1 are ordered as numbers, not as text."""
    frame = iris_frame.assign(species=np.resize([10, 2, -1], len(iris_frame)))
    loaded = load_dataset(_write(frame, tmp_path / "sorted.csv"))
    assert loaded.class_names == ("-1", "2", "10")
    assert binarize(loaded, 10)[1] == "10" and binarize(loaded, "-1")[1] == "-1"


def test_mixed_label_column_prefers_the_class_name(tmp_path, iris_frame):
    """Labels 1, 2 and x are names; the positive class 1 is the class '1', not index 1 ('2')."""
    frame = iris_frame.assign(species=np.resize(["1", "2", "x"], len(iris_frame)))
    path = _write(frame, tmp_path / "mixed.csv")
    loaded = load_dataset(path)
    assert loaded.class_names == ("1", "2", "x") and not loaded.integer_codes
    assert binarize(loaded, 1)[1] == "1" and binarize(loaded, "2")[1] == "2"
    assert binarize(loaded, "x")[1] == "x"


def test_many_classes_are_listed_briefly(tmp_path, iris_frame):
    """An error about data with 150 classes lists 20 of them and the count, not all."""
    frame = iris_frame.assign(species=[f"c{i:03d}" for i in range(len(iris_frame))])
    loaded = load_dataset(_write(frame, tmp_path / "many.parquet"))
    with pytest.raises(ValueError, match=r"^positive_class: 'rose' .*") as raised:
        positive_index(loaded, "rose")
    message = str(raised.value)
    assert "c019, ... (150 in all) or an index 0..149" in message and "c020" not in message
    assert len(message) < 300


def test_huge_digit_positive_class_is_refused_by_name(dataset, coded):
    """A positive class of thousands of digits is refused by name, not by int()'s digit limit."""
    for data in (dataset, coded):
        with pytest.raises(ValueError, match=r"^positive_class: '9999.* is not a"):
            positive_index(data, "9" * 5000)


def test_boolean_labels_are_names(tmp_path, iris_frame):
    """A boolean label column loads as the names False and True, chosen by name or index."""
    frame = iris_frame.assign(species=iris_frame["species"] == "versicolor")
    loaded = load_dataset(_write(frame, tmp_path / "bool.parquet"))
    assert loaded.class_names == ("False", "True") and not loaded.integer_codes
    assert binarize(loaded, "True")[0].sum() == 50 and binarize(loaded, 1)[1] == "True"


def test_class_names_are_stripped_of_spaces(tmp_path, dataset, iris_frame):
    """'setosa ' and 'setosa' are one class: stray spaces do not split a class in two."""
    frame = iris_frame.copy()
    frame.loc[::2, "species"] = " " + frame.loc[::2, "species"] + " "
    loaded = load_dataset(_write(frame, tmp_path / "spaces.csv"))
    assert loaded.class_names == dataset.class_names
    assert loaded.fingerprint() == dataset.fingerprint()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_blank_class_name_is_refused(tmp_path, iris_frame, suffix):
    """A label of only spaces is refused: it names no class."""
    frame = iris_frame.copy()
    frame.loc[[3, 8], "species"] = "  "
    with pytest.raises(
        ValueError,
        match=r"data_path: label column 'species' of .* has blank class names in 2 row\(s\), "
        r"first at row 3; every row needs a class name or integer code",
    ):
        load_dataset(_write(frame, tmp_path / f"data{suffix}"))


def test_label_values_that_are_not_text_are_refused(tmp_path, iris_frame):
    """A Parquet label column of bytes is refused, not turned into names like "b'setosa'"."""
    frame = iris_frame.assign(species=iris_frame["species"].map(str.encode).astype(object))
    with pytest.raises(
        ValueError,
        match=r"data_path: label column 'species' of .* must hold class names or integer codes; "
        r"found bytes b'setosa' at row 0",
    ):
        load_dataset(_write(frame, tmp_path / "bytes.parquet"))


@pytest.mark.parametrize("column", ["sepal_length", "species"])
def test_csv_with_a_repeated_column_is_refused(tmp_path, iris_frame, column):
    """A CSV naming a column twice is refused: pandas would silently read only the first."""
    frame = iris_frame.copy()
    frame.insert(0, "extra", frame[column])
    path = tmp_path / "dup.csv"
    frame.to_csv(path, index=False, header=[column, *iris_frame.columns])
    with pytest.raises(
        ValueError,
        match=rf"data_path: '.*dup\.csv' has more than one column named '{column}'; each "
        "feature and label column must appear once",
    ):
        load_dataset(str(path))


def test_a_file_too_large_is_refused_from_its_size_without_reading_it(tmp_path):
    """A 2 GiB CSV (sparse: nothing to read) is refused by its size, naming data_path."""
    path = tmp_path / "huge.csv"
    with open(path, "wb") as handle:
        handle.truncate(2 << 30)
    with pytest.raises(ValueError, match=r"data_path: .*huge.csv' is 2,048 MiB; at most 100 MiB"):
        load_dataset(str(path))
