"""Iris data: load (bundled or from a file), binarize by a positive class, split, standardize."""

import csv
import hashlib
import os
import re
import reprlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

BUNDLED = "bundled:iris"
FEATURE_COLUMNS = ("sepal_length", "sepal_width", "petal_length", "petal_width")
LABEL_COLUMNS = ("species", "target", "label", "class")
FILE_FORMATS = (".csv", ".parquet", ".pq")
FLOAT32_MAX = float(np.finfo(np.float32).max)
EXACT_FLOAT_CODES = 2**53  # float label codes beyond this are not exact integers
# Iris is 4 KB; 100 MiB of CSV is ~3 million rows, beyond any full-batch sweep of this kind.
MAX_DATA_BYTES = 100 << 20
LISTED_CLASSES = 20  # error messages list at most this many classes
_INTEGER_TEXT = re.compile(r"[-+]?[0-9]{1,300}")


@dataclass(frozen=True)
class Dataset:
    """Labelled feature rows: the classes are `class_names`, labels index into them."""

    features: np.ndarray  # (N, 4) float32
    labels: np.ndarray  # (N,) int64, index into class_names
    class_names: tuple[str, ...]
    source: str  # BUNDLED or the file it was read from
    # labels are integer codes, class names the codes in numeric order: positive_class 1 is code 1
    integer_codes: bool = False

    def fingerprint(self) -> str:
        """Return a SHA-256 of the rows and class names: equal data gives an equal fingerprint."""
        digest = hashlib.sha256(np.ascontiguousarray(self.features, dtype="<f4").tobytes())
        digest.update(np.ascontiguousarray(self.labels, dtype="<i8").tobytes())
        digest.update("\0".join(self.class_names).encode())
        return digest.hexdigest()


@dataclass(frozen=True)
class Split:
    """A binarized train/test split ready for training; test arrays are empty when test_size=0."""

    x_train: np.ndarray  # (N_train, 4) float32
    y_train: np.ndarray  # (N_train,) float32 in {0, 1}
    x_test: np.ndarray  # (N_test, 4) float32
    y_test: np.ndarray  # (N_test,) float32 in {0, 1}
    positive_class: str
    data_fingerprint: str
    data_source: str


def load_dataset(data_path: str | None = None) -> Dataset:
    """Load bundled Iris (no network) or a CSV/Parquet file of `FEATURE_COLUMNS` and a label."""
    if data_path is None:
        from sklearn.datasets import load_iris

        iris = load_iris()
        names = tuple(str(name) for name in iris.target_names)
        return Dataset(iris.data.astype(np.float32), iris.target.astype(np.int64), names, BUNDLED)
    _check_path(data_path)
    try:
        if data_path.lower().endswith(".csv"):
            frame = pd.read_csv(data_path)
            # read_csv renames a repeated column ("sepal_length.1"); the raw header shows it
            with open(data_path, newline="", encoding="utf-8-sig") as handle:
                header = next(csv.reader(handle), [])
        else:
            frame = pd.read_parquet(data_path)
            header = list(frame.columns)
    except Exception as error:  # a reader's own error names neither the parameter nor the fix
        raise ValueError(f"data_path: cannot read {data_path!r}: {error}") from error
    if repeated := [c for c in (*FEATURE_COLUMNS, *LABEL_COLUMNS) if header.count(c) > 1]:
        raise ValueError(
            f"data_path: {data_path!r} has more than one column named "
            f"{', '.join(map(repr, repeated))}; each feature and label column must appear once"
        )
    return _dataset_from_frame(frame, data_path)


def _check_path(data_path: str) -> None:
    """Refuse a `data_path` that is no CSV or Parquet file, or a larger one than is ever read."""
    wanted = f"expected a CSV or Parquet file ({', '.join(FILE_FORMATS)})"
    if not isinstance(data_path, str) or not data_path.strip():
        raise ValueError(f"data_path: {wanted}, got {data_path!r}")
    if os.path.isdir(data_path):
        raise ValueError(f"data_path: {data_path!r} is a folder; {wanted} in it")
    extension = os.path.splitext(data_path)[1].lower()
    if extension not in FILE_FORMATS:
        raise ValueError(
            f"data_path: unsupported format {extension or '(no extension)'!r} of {data_path!r}; "
            f"supported are {', '.join(FILE_FORMATS)}"
        )
    if not os.path.exists(data_path):
        raise ValueError(f"data_path: no such file {data_path!r}")
    if not os.path.isfile(data_path):  # a device or a pipe
        raise ValueError(f"data_path: {data_path!r} is not a file; {wanted}")
    size = os.path.getsize(data_path)
    if size > MAX_DATA_BYTES:  # asked of the file system: a huge file is never read to find out
        raise ValueError(
            f"data_path: {data_path!r} is {size / 2**20:,.0f} MiB; at most "
            f"{MAX_DATA_BYTES >> 20} MiB are read (every epoch trains on every row, for every "
            "seed): take a sample of the rows"
        )


def _listing(names: tuple[str, ...]) -> str:
    more = f", ... ({len(names)} in all)" if len(names) > LISTED_CLASSES else ""
    return ", ".join(names[:LISTED_CLASSES]) + more


def _dataset_from_frame(frame: pd.DataFrame, source: str) -> Dataset:
    refused = f"data_path: {source!r} has "
    expected = f"; expected columns {', '.join(FEATURE_COLUMNS)} and a label column "
    expected += f"({' or '.join(LABEL_COLUMNS)})"
    if len(frame) == 0:
        raise ValueError(refused + "no data rows, only a header")
    if missing := [column for column in FEATURE_COLUMNS if column not in frame.columns]:
        raise ValueError(refused + f"no feature column {', '.join(map(repr, missing))}" + expected)
    label_column = next((c for c in LABEL_COLUMNS if c in frame.columns), None)
    if label_column is None:
        raise ValueError(refused + "no label column" + expected)
    if non_numeric := [c for c in FEATURE_COLUMNS if not pd.api.types.is_numeric_dtype(frame[c])]:
        shown = ", ".join(map(repr, non_numeric))
        raise ValueError(f"data_path: feature column(s) {shown} of {source!r} are not numeric")
    values = frame[list(FEATURE_COLUMNS)].to_numpy(dtype=np.float64)
    rows = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if rows.size:
        raise ValueError(
            refused + f"NaN or infinite features in {rows.size} row(s), first at row {rows[0]}"
        )
    # finite in float64 is not enough: 1e39 becomes inf in the model's float32
    rows = np.flatnonzero((np.abs(values) > FLOAT32_MAX).any(axis=1))
    if rows.size:
        raise ValueError(
            refused + f"feature values beyond float32's range (|x| > {FLOAT32_MAX:.1e}) in "
            f"{rows.size} row(s), first at row {rows[0]}; the model trains in float32"
        )
    refused = f"data_path: label column {label_column!r} of {source!r} "
    names, index, integer_codes = _labels(frame[label_column], refused)
    return Dataset(values.astype(np.float32), index, names, source, integer_codes)


def _labels(labels: pd.Series, refused: str) -> tuple[tuple[str, ...], np.ndarray, bool]:
    """Return the class names, each row's index into them, and whether they are integer codes."""
    if labels.isna().any():
        raise ValueError(refused + "has missing values")
    values = labels.to_numpy()
    if pd.api.types.is_numeric_dtype(labels) and not pd.api.types.is_bool_dtype(labels):
        if values.dtype.kind == "f":
            with np.errstate(invalid="ignore"):  # exact integers only
                bad = ~np.isfinite(values) | (values != np.round(values))
                bad |= np.abs(values) > EXACT_FLOAT_CODES
        else:  # integers are codes; anything else (complex) is not
            bad = np.full(len(values), values.dtype.kind not in "iu")
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            value = values[row]
            shown = repr(float(value)) if values.dtype.kind == "f" else reprlib.repr(value)
            raise ValueError(
                refused + f"must hold class names or integer codes; found {shown} at row {row}"
            )
        codes, inverse = np.unique(values, return_inverse=True)
        return tuple(str(int(code)) for code in codes), inverse.reshape(-1).astype(np.int64), True
    if labels.dtype == object:  # a Parquet column may hold bytes, lists, decimals, ...
        for row, value in enumerate(values):
            if isinstance(value, bool | np.bool_) or not isinstance(value, str | int | np.integer):
                raise ValueError(
                    refused + "must hold class names or integer codes; found "
                    f"{type(value).__name__} {reprlib.repr(value)} at row {row}"
                )
    text = np.array([str(value).strip() for value in values], dtype=object)
    blank = np.flatnonzero(text == "")
    if blank.size:
        raise ValueError(
            refused + f"has blank class names in {blank.size} row(s), first at row "
            f"{int(blank[0])}; every row needs a class name or integer code"
        )
    codes = [_as_integer(name) for name in text]
    is_coded = None not in codes  # "1", "2", "3" as text: integer codes, ordered as numbers
    keys = np.array(codes, dtype=object) if is_coded else text
    names, inverse = np.unique(keys, return_inverse=True)
    return tuple(str(name) for name in names), inverse.reshape(-1).astype(np.int64), is_coded


def _as_integer(value: object) -> int | None:
    """The integer that `value` is or spells ("007", "+3"), else None."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str) and _INTEGER_TEXT.fullmatch(value.strip()):
        return int(value)
    return None


def positive_index(dataset: Dataset, positive_class: str | int) -> int:
    """Return the index of `positive_class`: a class name, else an integer code or index."""
    names = dataset.class_names
    shown = repr(int(positive_class) if isinstance(positive_class, np.integer) else positive_class)
    if isinstance(positive_class, str) and positive_class in names:
        return names.index(positive_class)
    as_integer = _as_integer(positive_class)
    if as_integer is not None and str(as_integer) in names:
        return names.index(str(as_integer))
    if dataset.integer_codes:
        raise ValueError(
            f"positive_class: {shown} is not a label of the data; its labels are the "
            f"integer codes {_listing(names)}"
        )
    if as_integer is not None and 0 <= as_integer < len(names):
        return as_integer
    raise ValueError(
        f"positive_class: {shown} is not a class of the data; valid are the names "
        f"{_listing(names)} or an index 0..{len(names) - 1}"
    )


def binarize(dataset: Dataset, positive_class: str | int) -> tuple[np.ndarray, str]:
    """Return the 0/1 float32 targets of `positive_class` against the rest, and the class's name."""
    index = positive_index(dataset, positive_class)
    targets = (dataset.labels == index).astype(np.float32)
    name = dataset.class_names[index]
    if targets.min() == targets.max():
        raise ValueError(
            f"positive_class: after binarizing by {name!r} the data of {dataset.source!r} holds a "
            "single class; both a positive and a negative row are needed"
        )
    return targets, name


def split_dataset(
    dataset: Dataset,
    positive_class: str | int = "versicolor",
    test_size: float = 0.25,
    split_seed: int = 0,
    standardize: bool = False,
) -> Split:
    """Binarize, split stratified by `split_seed` (`test_size=0`: none), standardize if asked."""
    targets, name = binarize(dataset, positive_class)
    x = dataset.features
    counts = {label: int((targets == label).sum()) for label in (0.0, 1.0)}
    if test_size > 0 and min(counts.values()) < 2:  # binarize leaves one of each; a split needs two
        raise ValueError(
            f"data_path: {dataset.source!r} has {len(targets)} rows, {counts[1.0]} of class "
            f"{name!r} and {counts[0.0]} of the rest; the split needs at least 2 of each"
        )
    if test_size == 0:
        x_train, y_train, x_test, y_test = x, targets, x[:0], targets[:0]
    else:
        from sklearn.model_selection import train_test_split

        try:
            x_train, x_test, y_train, y_test = train_test_split(
                x, targets, test_size=test_size, random_state=split_seed, stratify=targets
            )
        except ValueError as error:
            raise ValueError(
                f"test_size: {test_size} cannot split {len(targets)} rows into train and test "
                f"rows of both classes ({error}); choose a test_size in [0, 1) that leaves rows "
                "of both classes on each side, or 0 to train and evaluate on every row"
            ) from error
        for part, labels in (("training", y_train), ("test", y_test)):
            if labels.min() == labels.max():
                raise ValueError(
                    f"test_size: {test_size} leaves no {part} row of class "
                    f"{name if labels.min() == 0 else 'rest'!r}; choose a value further from "
                    f"{'1' if part == 'training' else '0'}"
                )
    if standardize:
        mean, std = x_train.mean(axis=0), x_train.std(axis=0)
        std[std == 0] = 1.0
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    arrays = (np.ascontiguousarray(a, dtype=np.float32) for a in (x_train, y_train, x_test, y_test))
    return Split(*arrays, name, dataset.fingerprint(), dataset.source)
