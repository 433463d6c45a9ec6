"""The sweep's parameters: one pydantic model that validates them, and the run form made of it."""

import inspect
from collections.abc import Callable
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo
from pydantic.functional_serializers import PlainSerializer
from pydantic.functional_validators import PlainValidator, field_validator, model_validator
from pydantic.json_schema import WithJsonSchema

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
# A shard's float32 curves by default (8 MB): its memory does not grow with the sweep's size.
SHARD_VALUES = 2_000_000
DEFAULT_MAX_SHARD_SIZE = 10_000
# Larger rates overflow float32 steps and crash torch; 1e30 already makes every loss NaN.
MAX_LEARNING_RATE = 1e30
# The smallest normal float32: a rate below it rounds to 0 (or a subnormal) in the updates.
MIN_LEARNING_RATE = 1.1754943508222875e-38
# What a refusal says is allowed where the run form's type and limits do not say it all.
ALLOWED = {
    "learning_rate": f"a positive finite number, at least {MIN_LEARNING_RATE:.2g} (in float32 a "
    f"smaller one is 0 or subnormal, and trains nothing) and at most {MAX_LEARNING_RATE:g}",
    "test_size": "a number in [0, 1) (0 trains and evaluates on every row)",
    "positive_class": "a class name or an integer code",
    "resume": "the id of the unfinished run to finish (letters, digits, '-' and '_', as printed "
    "when the run started), or empty for a new run",
}
# hidden_dims, seeds and split_seeds: one text field in the run form (`0..399, 500`), or a list
_TEXT = {"type": "string", "minLength": 1, "title": "ranges"}
_LIST = {"type": "array", "items": {"type": "integer"}, "minItems": 1, "title": "list"}
_RANGES_FORM = WithJsonSchema({"anyOf": [_TEXT, _LIST]})
_OPTIMIZER = {"type": "string", "enum": list(OPTIMIZERS)}
_OPTIMIZERS_FORM = WithJsonSchema({"type": "array", "items": _OPTIMIZER})


def _ranges(name: str, low: int, high: int, most: int) -> Any:
    """Integers in `low..high` as text or a list, kept as `IntRanges` (a million seeds: a pair)."""
    check = PlainValidator(lambda value: parse_ranges(name, value, low, high, most))
    return Annotated[IntRanges, check, PlainSerializer(str), _RANGES_FORM]


def _hidden_dims(value: Any) -> tuple[int, ...]:
    """The sizes, as text or a list (kept in its order)."""
    sizes = parse_ranges("hidden_dims", value, 1, MAX_HIDDEN_DIM, MAX_HIDDEN_DIMS)
    return tuple(map(int, value)) if isinstance(value, list | tuple) else tuple(sizes)


def _optimizer_names(value: Any) -> tuple[str, ...]:
    valid = ", ".join(OPTIMIZERS)
    if not isinstance(value, list | tuple):
        raise ValueError(f"optimizers: expected a list of names from {valid}, got {value!r}")
    if not value:
        raise ValueError(f"optimizers: must not be empty; valid names are {valid}")
    for name in value:
        if not isinstance(name, str) or name not in OPTIMIZERS:
            raise ValueError(f"optimizers: unknown optimizer {name!r}; valid names are {valid}")
    if len(set(value)) != len(value):
        raise ValueError(f"optimizers: duplicate names in {list(value)}; each may appear once")
    return tuple(value)


def _one_line(schema: dict[str, Any]) -> None:
    """Descriptions as the run form, the command line and the README show them: one line each."""
    for form in schema["properties"].values():
        form["description"] = " ".join(form["description"].split())


class SweepConfig(BaseModel):
    """One sweep: every (hidden_dim, optimizer) trained for every seed, then evaluated.

    `SweepConfig(**parameters)` raises `ValueError` naming the first bad parameter and what is
    allowed; `irismodel.preflight` checks the data. A field's docstring is its description.
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        strict=True,  # from Python and JSON alike: no "8" for 8, no 2.0 for 2, no "yes" for true
        validate_default=True,
        use_attribute_docstrings=True,
        json_schema_extra=_one_line,
    )

    hidden_dims: Annotated[
        tuple[int, ...], PlainValidator(_hidden_dims), PlainSerializer(list), _RANGES_FORM
    ] = "8..14"
    """Hidden layer sizes to sweep: a range such as 8..14, a list such as 8, 10, 12, or both
    (8..10, 16); each in 1..4096. The notebook's: 8..14."""
    optimizers: Annotated[
        tuple[str, ...], PlainValidator(_optimizer_names), PlainSerializer(list), _OPTIMIZERS_FORM
    ] = Field(("sgd", "manual", "manual-no-zero-grad"), json_schema_extra={"minItems": 1})
    """Update rules to compare: sgd (torch.optim.SGD), manual (the notebook's hand-written step,
    gradients reset every epoch), manual-no-zero-grad (the same step as the notebook first wrote
    it: gradients accumulate), momentum (SGD, momentum 0.9), adam."""
    seeds: _ranges("seeds", 0, MAX_SEED, MAX_SEEDS) = "0..399"
    """Model seeds: one model per seed for every hidden_dim, optimizer and data split; a range
    such as 0..399, a list, or both; at most 10,000,000 seeds. Seed s gives the same first rows
    of fc1.weight at every hidden_dim (fc1.bias and fc2 are drawn again), so models are compared
    seed by seed. The default (400 seeds x 2 splits) pins sgd's per-seed slope of the loss at
    epoch 100 to about +-0.001."""
    learning_rate: float = Field(0.1, ge=MIN_LEARNING_RATE, le=MAX_LEARNING_RATE)
    """Step size of every update rule (the notebook's 0.1); at least 1.2e-38 (a float32 above
    0), at most 1e+30."""
    epochs: int = Field(1000, ge=1, le=MAX_EPOCHS)
    """Full-batch training epochs per model (the notebook's 1000); 1..1,000,000."""
    test_size: float = Field(0.25, ge=0, lt=1)
    """Share of rows held out for evaluation, stratified by class, in [0, 1); 0 trains and
    evaluates on every row, as the notebook did."""
    split_seeds: _ranges("split_seeds", 0, MAX_SPLIT_SEED, MAX_SPLITS) = "0..1"
    """Seeds of the train/test splits, apart from the model seeds: every seed is trained on every
    split, a stratified split each; a range such as 0..5, a list, or both; each in
    0..4294967295, at most 1,000 splits."""
    standardize: bool = False
    """Scale the features by the training rows' mean and standard deviation (the notebook did
    not)."""
    positive_class: str | int = "versicolor"
    """The class told apart from the rest: a class name, or its integer code in the data (the
    notebook's: versicolor, code 1)."""
    data_path: str | None = None
    """A CSV or Parquet file with the columns sepal_length, sepal_width, petal_length,
    petal_width and a label column; empty for scikit-learn's bundled Iris."""
    device: str = Field("auto", json_schema_extra={"enum": list(DEVICE_CHOICES)})
    """Where to train: auto (the GPU if there is one, else the CPU), cpu, cuda or cuda:N."""
    # the pattern: the server refuses credentials before it stores a run (validation is later)
    output_dir: str = Field("results", json_schema_extra={"pattern": NO_CREDENTIALS})
    """Where results go: a folder, or a pyarrow filesystem URI such as s3://bucket/prefix; each
    run writes one folder in it."""
    shard_size: int | None = Field(None, ge=1, le=MAX_SHARD_SIZE)
    """Seeds per shard task, 1..100,000; empty for the default, which keeps a shard's loss
    curves within 2,000,000 values (8 MB): 2,000 seeds at 1,000 epochs, at most 10,000."""
    reference_seeds: int = Field(3, ge=0, le=MAX_REFERENCE_SEEDS)
    """Models per hidden_dim and optimizer retrained with the notebook's own loop to check the
    batched engine, row by row: seeds and splits evenly spread over the run, the first and the
    last included; 0 switches the check off; at most 1,000."""
    reference_epochs: int = Field(100, ge=1, le=MAX_EPOCHS)
    """Epochs of that check, from the start of training (the notebook's question is asked at
    epoch 100; every epoch of the default run would cost about a third of its time, not a
    tenth); 1..1,000,000, lowered to the run's epochs when it has fewer."""
    resume: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    """The run id of an unfinished run in output_dir to finish, with that run's own parameters:
    only its missing shards are trained. Empty for a new run."""
    force: bool = False
    """Start even if the forecast says the disk or the memory is too small."""
    report: bool = True
    """Make the report (answers, plots, summary table) once the results are published; without
    it, make it later with iris-sweep-report."""
    _resolved_device: str = PrivateAttr("")

    def __init__(self, **parameters: Any) -> None:
        try:
            super().__init__(**parameters)
        except ValidationError as error:  # one line naming the parameter, not pydantic's table
            raise ValueError(_refusal(error)) from None

    @field_validator("data_path", "resume", "shard_size", mode="before")
    @classmethod
    def _emptied(cls, value: Any) -> Any:
        """An emptied form field (`""`) means the default."""
        return None if value == "" else value

    @field_validator("output_dir", mode="before")
    @classmethod
    def _writable(cls, value: Any) -> str:
        return check_location(value, "output_dir")  # the absolute location

    @field_validator("reference_epochs")
    @classmethod
    def _within_epochs(cls, value: int, info: ValidationInfo) -> int:
        return min(value, info.data.get("epochs", value))

    @model_validator(mode="after")
    def _fits(self) -> Self:
        """The rules across parameters: the device exists, the plan has few enough shards."""
        self._resolved_device = resolve_device(self.device)
        per_shard, seeds = self.seeds_per_shard, len(self.seeds)
        shards = len(self.hidden_dims) * len(self.optimizers) * len(self.split_seeds)
        shards *= -(-seeds // per_shard)
        if shards > MAX_SHARDS and self.shard_size is not None:
            raise ValueError(
                f"shard_size: {per_shard} seeds per shard makes {shards:,} shard tasks; at most "
                f"{MAX_SHARDS:,} are allowed in one run, so raise shard_size (or leave it out)"
            )
        if shards > MAX_SHARDS:
            raise ValueError(
                f"seeds: {seeds:,} seeds x {self.epochs:,} epochs make {shards:,} shard tasks of "
                f"{per_shard} seeds (a shard's curves stay within {SHARD_VALUES:,} values); at "
                f"most {MAX_SHARDS:,} are allowed in one run: sweep fewer, or give a larger "
                "shard_size"
            )
        return self

    def parameters(self) -> dict[str, Any]:
        """Return the parameters as runs store them: JSON-ready, seeds as text, secrets redacted."""
        return {**self.model_dump(mode="json"), "output_dir": redact(self.output_dir)}

    @property
    def resolved_device(self) -> str:
        """The torch device the sweep trains on (`auto` resolved where it was validated)."""
        return self._resolved_device

    @property
    def seeds_per_shard(self) -> int:
        """Seeds in each shard: `shard_size`, or the default for this many epochs."""
        return self.shard_size or max(1, min(DEFAULT_MAX_SHARD_SIZE, SHARD_VALUES // self.epochs))


def _refusal(error: ValidationError) -> str:
    """Say what was refused: the parameter, its value, what is allowed."""
    problems = error.errors(include_url=False)
    if unknown := [str(p["loc"][0]) for p in problems if p["type"] == "extra_forbidden"]:
        valid = ", ".join(SweepConfig.model_fields)
        return f"unknown parameter(s) {', '.join(unknown)}; valid are {valid}"
    first = problems[0]
    if first["type"] == "value_error":  # a check of ours: its message names the parameter
        return str(first["ctx"]["error"])
    name = str(first["loc"][0])
    return f"{name}: {first['input']!r} is not allowed; it must be {_allowed(name)}"


def _allowed(name: str) -> str:
    """What a parameter allows, from its run-form schema (its type, choices and limits)."""
    if name in ALLOWED:
        return ALLOWED[name]
    form = run_form()[name]
    kinds = form.get("anyOf", [form])
    kind = kinds[0]
    if "enum" in kind:
        allowed = "one of " + ", ".join(kind["enum"])
    elif kind["type"] == "integer":
        allowed = f"an integer in {kind['minimum']:,}..{kind['maximum']:,}"
    else:
        allowed = {"boolean": "true or false", "string": "text"}[kind["type"]]
    return allowed + (", or empty for the default" if {"type": "null"} in kinds else "")


def run_form() -> dict[str, dict[str, Any]]:
    """Return each parameter's run-form schema: type, choices, limits, default, description."""
    return SweepConfig.model_json_schema()["properties"]


def form_defaults() -> dict[str, Any]:
    """Return each parameter's default as the run form and the command line show it."""
    return {name: form["default"] for name, form in run_form().items()}


def sweep_parameters(function: Callable[..., Any]) -> Callable[..., Any]:
    """Give `function` the sweep's parameters as signature (Prefect's run form) and `Args:` docs."""
    form, keyword = run_form(), inspect.Parameter.KEYWORD_ONLY
    forms = {name: Annotated[Any, WithJsonSchema(schema)] for name, schema in form.items()}
    parameters = [
        inspect.Parameter(name, keyword, default=form[name]["default"], annotation=annotation)
        for name, annotation in forms.items()
    ]
    signature = inspect.Signature(parameters, return_annotation=str)
    function.__signature__ = signature  # type: ignore[attr-defined]
    docs = "\n".join(f"    {name}: {schema['description']}" for name, schema in form.items())
    function.__doc__ = inspect.cleandoc(function.__doc__ or "") + "\n\nArgs:\n" + docs + "\n"
    return function
