"""The sweep's parameters, their defaults, and their validation, in one place."""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Annotated, Any

from pydantic import (
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    WithJsonSchema,
)

from irismodel.data import Split, check_data_path, load_dataset, split_dataset
from irismodel.devices import resolve_device
from irismodel.optimizers import OPTIMIZERS
from irismodel.ranges import IntRanges, parse_ranges
from irismodel.store.locations import check_location, redact

MAX_HIDDEN_DIM = 4096
MAX_HIDDEN_DIMS = 4096  # sizes in one sweep
MAX_SPLIT_SEED = 2**32 - 1
MAX_SPLITS = 1000  # data splits in one sweep
MAX_REFERENCE_SEEDS = 1000
# A URI with a user and secret (`s3://key:secret@bucket`): refused by the run form's schema.
NO_CREDENTIALS = r"^(?![A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@)"
DEVICE_CHOICES = ("auto", "cpu", "cuda", *(f"cuda:{i}" for i in range(8)))
MAX_EPOCHS = 1_000_000
MAX_SEED = 2**63 - 1
# Bounds that keep a run's plan small and refuse a typo such as 0..1000000000 in seconds.
MAX_SEEDS = 10_000_000
MAX_SHARD_SIZE = 100_000
MAX_SHARDS = 100_000  # shard tasks in one run: each is a Prefect task run
# A shard's loss curves (float32) stay within this many values by default: 8 MB, so a shard
# task's memory does not depend on the sweep's size (2,000 seeds at 1,000 epochs).
SHARD_VALUES = 2_000_000
DEFAULT_MAX_SHARD_SIZE = 10_000
_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Larger rates overflow float32 update steps (Adam's first step is 10 x lr) and crash torch
# instead of diverging; 1e30 already turns every model's loss into NaN within an epoch or two.
MAX_LEARNING_RATE = 1e30
# The smallest normal float32: a rate below it rounds to 0 (or a subnormal) in the updates.
MIN_LEARNING_RATE = 1.1754943508222875e-38


Form = Any  # a pydantic-ready annotation: the type a flow accepts and its run-form schema


def _form(kind: Any, **schema: Any) -> Form:
    """Return `kind` annotated with what the run form shows beside it (enum, minimum, ...).

    Limits are shown, not enforced here: `validate_config` enforces them with its own messages.
    """
    return Annotated[kind, Field(json_schema_extra=schema)] if schema else kind


def _optional(kind: Any, schema: dict[str, Any]) -> Form:
    """Return `kind | None`: one field in the run form, whose untouched null is accepted.

    The schema keeps `null` beside the type, so the server's validation of the form (and of
    `prefect deployment run`) takes the default as it stands.
    """
    return Annotated[kind | None, WithJsonSchema({"anyOf": [schema, {"type": "null"}]})]


# hidden_dims and seeds: one text field in the form (`0..29`), or a list
_RANGES_FORM = Annotated[
    StrictStr | list[StrictInt],
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "minLength": 1, "title": "ranges"},
                {"type": "array", "items": {"type": "integer"}, "minItems": 1, "title": "list"},
            ]
        }
    ),
]


def _parameter(default: Any, description: str, form: Form, cli: str) -> Any:
    """Declare one sweep parameter: default, description, run-form type, command-line reader.

    `cli` is how the command line reads it: `ranges`, `names`, `int`, `float`, `text`, `bool`
    or `class`.
    """
    metadata = {"description": description, "form": form, "cli": cli}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class SweepConfig:
    """One sweep: every (hidden_dim, optimizer) trained for every seed, then evaluated.

    The one declaration of the sweep's parameters: the flow's signature and run form
    (`flow_signature`), its docstring (`parameter_docs`) and the command line are made from it.
    """

    hidden_dims: tuple[int, ...] | IntRanges | str = _parameter(
        tuple(range(8, 15)),
        f"Hidden layer sizes to sweep: a range such as 8..14, a list such as 8, 10, 12, or both "
        f"(8..10, 16); each in 1..{MAX_HIDDEN_DIM}. The notebook's: 8..14.",
        _RANGES_FORM,
        "ranges",
    )
    optimizers: tuple[str, ...] = _parameter(
        ("sgd", "manual", "manual-no-zero-grad"),
        "Update rules to compare: sgd (torch.optim.SGD), manual (the notebook's hand-written "
        "step, gradients reset every epoch), manual-no-zero-grad (the same step as the notebook "
        "first wrote it: gradients accumulate), momentum (SGD, momentum 0.9), adam.",
        _form(list[StrictStr], items={"type": "string", "enum": list(OPTIMIZERS)}, minItems=1),
        "names",
    )
    seeds: IntRanges | Sequence[int] | str = _parameter(
        IntRanges.of(range(400)),
        f"Model seeds: one model per seed for every hidden_dim, optimizer and data split; a "
        f"range such as 0..399, a list, or both; at most {MAX_SEEDS:,} seeds. Seed s gives the "
        "same first rows of fc1.weight at every hidden_dim (fc1.bias and fc2 are drawn again), "
        "so models are compared seed by seed. The default (400 seeds x 2 splits) pins sgd's "
        "per-seed slope of the loss at epoch 100 to about +-0.001.",
        _RANGES_FORM,
        "ranges",
    )
    learning_rate: float = _parameter(
        0.1,
        f"Step size of every update rule (the notebook's 0.1); at least {MIN_LEARNING_RATE:.2g} "
        f"(a float32 above 0), at most {MAX_LEARNING_RATE:g}.",
        _form(StrictFloat, minimum=MIN_LEARNING_RATE, maximum=MAX_LEARNING_RATE),
        "float",
    )
    epochs: int = _parameter(
        1000,
        f"Full-batch training epochs per model (the notebook's 1000); 1..{MAX_EPOCHS:,}.",
        _form(StrictInt, minimum=1, maximum=MAX_EPOCHS),
        "int",
    )
    test_size: float = _parameter(
        0.25,
        "Share of rows held out for evaluation, stratified by class, in [0, 1); 0 trains and "
        "evaluates on every row, as the notebook did.",
        _form(StrictFloat, minimum=0, exclusiveMaximum=1),
        "float",
    )
    split_seeds: IntRanges | Sequence[int] | str = _parameter(
        IntRanges.of(range(2)),
        f"Seeds of the train/test splits, apart from the model seeds: every seed is trained on "
        f"every split, a stratified split each; a range such as 0..5, a list, or both; each in "
        f"0..{MAX_SPLIT_SEED}, at most {MAX_SPLITS:,} splits.",
        _RANGES_FORM,
        "ranges",
    )
    standardize: bool = _parameter(
        False,
        "Scale the features by the training rows' mean and standard deviation (the notebook "
        "did not).",
        StrictBool,
        "bool",
    )
    positive_class: str | int = _parameter(
        "versicolor",
        "The class told apart from the rest: a class name, or its integer code in the data "
        "(the notebook's: versicolor, code 1).",
        StrictStr | StrictInt,
        "class",
    )
    data_path: str | None = _parameter(
        None,
        "A CSV or Parquet file with the columns sepal_length, sepal_width, petal_length, "
        "petal_width and a label column; empty for scikit-learn's bundled Iris.",
        _optional(StrictStr, {"type": "string"}),
        "text",
    )
    device: str = _parameter(
        "auto",
        "Where to train: auto (the GPU if there is one, else the CPU), cpu, cuda or cuda:N.",
        _form(StrictStr, enum=list(DEVICE_CHOICES)),
        "text",
    )
    output_dir: str = _parameter(
        "results",
        "Where results go: a folder, or a pyarrow filesystem URI such as s3://bucket/prefix; "
        "each run writes one folder in it.",
        # the server refuses credentials before it stores the run (validation comes later)
        _form(StrictStr, pattern=NO_CREDENTIALS),
        "text",
    )
    shard_size: int | None = _parameter(
        None,
        f"Seeds per shard task, 1..{MAX_SHARD_SIZE:,}; empty for the default, which keeps a "
        f"shard's loss curves within {SHARD_VALUES:,} values (8 MB): 2,000 seeds at 1,000 epochs, "
        f"at most {DEFAULT_MAX_SHARD_SIZE:,}.",
        _optional(StrictInt, {"type": "integer", "minimum": 1, "maximum": MAX_SHARD_SIZE}),
        "int",
    )
    reference_seeds: int = _parameter(
        3,
        f"Models per hidden_dim and optimizer retrained with the notebook's own loop to check "
        f"the batched engine, row by row: seeds and splits evenly spread over the run, the "
        f"first and the last included; 0 switches the check off; at most "
        f"{MAX_REFERENCE_SEEDS:,}.",
        _form(StrictInt, minimum=0, maximum=MAX_REFERENCE_SEEDS),
        "int",
    )
    reference_epochs: int = _parameter(
        100,
        "Epochs of that check, from the start of training (the notebook's question is asked at "
        f"epoch 100; every epoch of the default run would cost about a third of its time, not "
        f"a tenth); 1..{MAX_EPOCHS:,}, lowered to the run's epochs when it has fewer.",
        _form(StrictInt, minimum=1, maximum=MAX_EPOCHS),
        "int",
    )
    resume: str | None = _parameter(
        None,
        "The run id of an unfinished run in output_dir to finish, with that run's own "
        "parameters: only its missing shards are trained. Empty for a new run.",
        _optional(StrictStr, {"type": "string", "pattern": f"^{_RUN_ID.pattern}$"}),
        "text",
    )
    force: bool = _parameter(
        False,
        "Start even if the forecast says the disk or the memory is too small.",
        StrictBool,
        "bool",
    )
    report: bool = _parameter(
        True,
        "Make the report (answers, plots, summary table) once the results are published; "
        "without it, make it later with iris-sweep-report.",
        StrictBool,
        "bool",
    )
    resolved_device: str = field(default="", compare=False)

    def parameters(self) -> dict[str, Any]:
        """Return the parameters as JSON-ready plain data: seeds as text (`0..29`), lists."""
        params = asdict(self)
        params.pop("resolved_device")
        params["seeds"] = self.seed_set.text()
        params["split_seeds"] = self.split_set.text()
        params["hidden_dims"] = list(self.hidden_dims)
        params["output_dir"] = redact(self.output_dir)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}

    @property
    def seed_set(self) -> IntRanges:
        """The seeds, as validated (`validate_config` stores an `IntRanges`)."""
        if isinstance(self.seeds, IntRanges):
            return self.seeds
        return IntRanges.of(self.seeds)  # type: ignore[arg-type]

    @property
    def split_set(self) -> IntRanges:
        """The split seeds, as validated (`validate_config` stores an `IntRanges`)."""
        if isinstance(self.split_seeds, IntRanges):
            return self.split_seeds
        return IntRanges.of(self.split_seeds)  # type: ignore[arg-type]

    @property
    def seeds_per_shard(self) -> int:
        """Seeds in each shard: `shard_size`, or the default for this many epochs."""
        return self.shard_size if self.shard_size is not None else default_shard_size(self.epochs)


PARAMETERS = tuple(f for f in fields(SweepConfig) if "description" in f.metadata)
PARAMETER_NAMES = tuple(f.name for f in PARAMETERS)


def form_defaults() -> dict[str, Any]:
    """Return each parameter's default as the run form and the command line show it."""
    defaults = SweepConfig().parameters()
    defaults["hidden_dims"] = IntRanges.of(SweepConfig.hidden_dims).text()  # type: ignore[arg-type]
    return defaults


def flow_signature() -> inspect.Signature:
    """Return the flow's signature: every parameter keyword-only, with its form type and default."""
    defaults = form_defaults()
    return inspect.Signature(
        [
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=defaults[f.name],
                annotation=f.metadata["form"],
            )
            for f in PARAMETERS
        ],
        return_annotation=str,
    )


def parameter_docs() -> str:
    """Return a Google-style `Args:` section of every parameter (Prefect's form reads it)."""
    lines = ["", "Args:"]
    for f in PARAMETERS:
        lines.append(f"    {f.name}: {f.metadata['description']}")
    return "\n".join(lines) + "\n"


def sweep_parameters(function: Callable[..., Any]) -> Callable[..., Any]:
    """Give `function(**parameters)` the sweep's signature and parameter docs (a decorator)."""
    function.__signature__ = flow_signature()  # type: ignore[attr-defined]
    function.__doc__ = inspect.cleandoc(function.__doc__ or "") + "\n" + parameter_docs()
    return function


def default_shard_size(epochs: int) -> int:
    """Return the default seeds per shard: curves within `SHARD_VALUES` floats, at most 10,000."""
    return max(1, min(DEFAULT_MAX_SHARD_SIZE, SHARD_VALUES // max(epochs, 1)))


def _int_list(name: str, values: Any, low: int, high: int) -> tuple[int, ...]:
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise ValueError(f"{name}: expected a list of integers, got {values!r}")
    if len(values) == 0:
        raise ValueError(f"{name}: must not be empty; give at least one integer in {low}..{high}")
    out = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ValueError(f"{name}: {value!r} is not an integer; allowed are {low}..{high}")
        if not low <= value <= high:
            raise ValueError(f"{name}: {value} is out of range; allowed are {low}..{high}")
        out.append(value)
    seen: set[int] = set()
    duplicates = sorted({v for v in out if v in seen or seen.add(v)})
    if duplicates:
        raise ValueError(f"{name}: duplicate value(s) {duplicates}; each may appear once")
    return tuple(out)


def _positive_finite(name: str, value: Any, high: float) -> float:
    allowed = (
        f"it must be a positive finite number, at least {MIN_LEARNING_RATE:.2g} (in float32 a "
        f"smaller one is 0 or subnormal, and trains nothing) and at most {high:g}"
    )
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: expected a number, got {value!r}; {allowed}")
    if not math.isfinite(value) or not MIN_LEARNING_RATE <= value <= high:
        raise ValueError(f"{name}: {value} is not allowed; {allowed}")
    return float(value)


def validate_config(**parameters: Any) -> SweepConfig:
    """Return a `SweepConfig` from sweep parameters, or raise `ValueError` naming the bad one.

    Checks everything that needs no reading of the data: names, ranges, the device (CUDA must
    exist if asked for), that a `data_path` is an existing CSV or Parquet file, and that the
    output location can be written. Nothing is written. The checks that read the data (its
    columns and values, the positive class, whether the split leaves rows of both classes) are
    `check_data`'s, run by the flow when it splits the data.
    """
    unknown = set(parameters) - set(PARAMETER_NAMES)
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(sorted(unknown))}; "
            f"valid are {', '.join(PARAMETER_NAMES)}"
        )
    # an emptied form field: the same as leaving it out
    empty = {name: None for name in ("data_path", "resume") if parameters.get(name) == ""}
    config = SweepConfig(**{**parameters, **empty})
    if isinstance(config.hidden_dims, str | IntRanges):
        dims = parse_ranges("hidden_dims", config.hidden_dims, 1, MAX_HIDDEN_DIM, MAX_HIDDEN_DIMS)
        hidden_dims = tuple(dims)
    else:
        hidden_dims = _int_list("hidden_dims", config.hidden_dims, 1, MAX_HIDDEN_DIM)
    seeds = parse_ranges("seeds", config.seeds, 0, MAX_SEED, MAX_SEEDS)

    optimizers = config.optimizers
    if isinstance(optimizers, str) or not isinstance(optimizers, Sequence):
        raise ValueError(f"optimizers: expected a list of names from {', '.join(OPTIMIZERS)}")
    if len(optimizers) == 0:
        raise ValueError(f"optimizers: must not be empty; valid names are {', '.join(OPTIMIZERS)}")
    for name in optimizers:
        if name not in OPTIMIZERS:
            raise ValueError(
                f"optimizers: unknown optimizer {name!r}; valid names are {', '.join(OPTIMIZERS)}"
            )
    if len(set(optimizers)) != len(optimizers):
        raise ValueError(f"optimizers: duplicate names in {list(optimizers)}; each may appear once")

    learning_rate = _positive_finite("learning_rate", config.learning_rate, MAX_LEARNING_RATE)
    epochs = config.epochs
    if isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs <= MAX_EPOCHS:
        raise ValueError(
            f"epochs: {epochs!r} is not allowed; it must be an integer in 1..{MAX_EPOCHS}"
        )
    test_size = config.test_size
    if (
        isinstance(test_size, bool)
        or not isinstance(test_size, int | float)
        or not math.isfinite(test_size)
        or not 0 <= test_size < 1
    ):
        raise ValueError(
            f"test_size: {test_size!r} is not allowed; it must be in [0, 1) "
            "(0 trains and evaluates on every row)"
        )
    split_seeds = parse_ranges("split_seeds", config.split_seeds, 0, MAX_SPLIT_SEED, MAX_SPLITS)
    for name, low, high in (
        ("reference_seeds", 0, MAX_REFERENCE_SEEDS),
        ("reference_epochs", 1, MAX_EPOCHS),
    ):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(
                f"{name}: {value!r} is not allowed; it must be an integer in {low}..{high:,}"
            )
    for name in ("force", "report"):
        if not isinstance(getattr(config, name), bool):
            raise ValueError(f"{name}: expected true or false, got {getattr(config, name)!r}")
    if not isinstance(config.standardize, bool):
        raise ValueError(f"standardize: expected true or false, got {config.standardize!r}")
    positive_class = config.positive_class
    if isinstance(positive_class, bool) or not isinstance(positive_class, str | int):
        raise ValueError(f"positive_class: expected a class name or index, got {positive_class!r}")
    if config.data_path is not None:
        check_data_path(config.data_path)
    shard_size = config.shard_size
    if shard_size is not None and (
        isinstance(shard_size, bool)
        or not isinstance(shard_size, int)
        or not 1 <= shard_size <= MAX_SHARD_SIZE
    ):
        raise ValueError(
            f"shard_size: {shard_size!r} is not allowed; it must be an integer in "
            f"1..{MAX_SHARD_SIZE}, or null for the default ({SHARD_VALUES:,} loss values a shard)"
        )
    per_shard = shard_size if shard_size is not None else default_shard_size(epochs)
    shards = len(hidden_dims) * len(optimizers) * len(split_seeds) * -(-len(seeds) // per_shard)
    if shards > MAX_SHARDS and shard_size is not None:
        raise ValueError(
            f"shard_size: {per_shard} seeds per shard makes {shards:,} shard tasks; at most "
            f"{MAX_SHARDS:,} are allowed in one run, so raise shard_size (or leave it out)"
        )
    if shards > MAX_SHARDS:
        raise ValueError(
            f"seeds: {len(seeds):,} seeds x {epochs:,} epochs make {shards:,} shard tasks of "
            f"{per_shard} seeds (a shard's curves stay within {SHARD_VALUES:,} values); at most "
            f"{MAX_SHARDS:,} are allowed in one run: sweep fewer, or give a larger shard_size"
        )
    resume = config.resume
    if resume is not None and (not isinstance(resume, str) or not _RUN_ID.fullmatch(resume)):
        raise ValueError(
            f"resume: {resume!r} is not a run id; give the id of the unfinished run to finish "
            "(letters, digits, '-' and '_', as printed when the run started)"
        )
    resolved_device = resolve_device(config.device)
    output_dir = check_location(config.output_dir, "output_dir")
    return SweepConfig(
        hidden_dims=hidden_dims,
        optimizers=tuple(optimizers),
        seeds=seeds,
        learning_rate=learning_rate,
        epochs=epochs,
        test_size=float(test_size),
        split_seeds=split_seeds,
        standardize=config.standardize,
        positive_class=positive_class,
        data_path=config.data_path,
        device=config.device,
        output_dir=output_dir,
        shard_size=shard_size,
        reference_seeds=config.reference_seeds,
        reference_epochs=min(config.reference_epochs, epochs),
        resume=resume,
        force=config.force,
        report=config.report,
        resolved_device=resolved_device,
    )


def check_splits(config: SweepConfig) -> dict[int, Split]:
    """Load the data and make every split of `config`, by split seed; raise `ValueError` if bad.

    The data-dependent half of validation: `validate_config` then `check_splits` refuse every
    bad input before any training. Nothing is written; the splits are returned for reuse.
    """
    dataset = load_dataset(config.data_path)
    return {
        seed: split_dataset(
            dataset, config.positive_class, config.test_size, seed, config.standardize
        )
        for seed in config.split_set
    }


def check_data(config: SweepConfig) -> Split:
    """Check the data and every split as `check_splits` does; return the first split."""
    return next(iter(check_splits(config).values()))


def _span(values: Sequence[int]) -> str:
    ordered = sorted(values)
    if len(ordered) > 1 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]}-{ordered[-1]}"
    return ",".join(str(v) for v in ordered[:4]) + ("..." if len(ordered) > 4 else "")


def run_label(parameters: Mapping[str, Any]) -> str:
    """Return a run's name from its parameters, e.g. `h8-14_sgd+manual_s10_e1000`.

    Tolerant of any input (it names runs whose parameters may be refused a moment later).
    """
    defaults = SweepConfig()
    try:
        dims_given = parameters.get("hidden_dims") or defaults.hidden_dims
        dims = list(parse_ranges("hidden_dims", dims_given, 1, MAX_HIDDEN_DIM, MAX_HIDDEN_DIMS))
        rules = list(parameters.get("optimizers") or defaults.optimizers)
        seeds = parameters.get("seeds") or defaults.seed_set
        count = len(parse_ranges("seeds", seeds, 0, MAX_SEED, MAX_SEEDS))
        epochs = int(parameters.get("epochs") or defaults.epochs)
        return f"h{_span(dims)}_{'+'.join(map(str, rules))}_s{count}_e{epochs}"
    except (TypeError, ValueError):
        return "iris-sweep"


def run_tags(config: SweepConfig) -> list[str]:
    """Return the tags of a run: what it sweeps, so the Runs page can be filtered by it."""
    return [
        "iris-sweep",
        f"h{_span(config.hidden_dims)}",
        *config.optimizers,
        f"seeds:{len(config.seed_set)}",
        f"splits:{len(config.split_set)}",
        f"epochs:{config.epochs}",
        config.resolved_device,
    ]
