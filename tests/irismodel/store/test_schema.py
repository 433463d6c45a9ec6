"""The schema's versions only add columns, and a file's schema is told apart by its version."""

import pyarrow as pa
import pytest

from irismodel.store import schema
from irismodel.store.layout import META_SCHEMA_VERSION


def test_older_versions_are_the_current_schema_less_the_columns_added_since():
    """Every older version's fields are current fields, same names and types, in order."""
    for version, older in schema.SCHEMAS.items():
        assert [schema.SCHEMA.field(f.name) for f in older] == list(older), version
    assert set(schema.SCHEMA.names) - set(schema.SCHEMA_V1.names) == {
        *schema.ADDED_IN_2,
        *schema.ADDED_IN_3,
        *schema.ADDED_IN_5,
    }


@pytest.mark.parametrize("version", ["1", "2", "3", "4", "5"])
def test_a_file_of_a_readable_version_passes_and_others_are_named(version):
    """A schema matching its version passes; no version, an unknown one, a lost column or another
    version than the one asked for are each said."""
    fields = schema.SCHEMAS[version]
    own = fields.with_metadata({META_SCHEMA_VERSION: version})
    assert schema.schema_problem(own, version=None) is None
    assert schema.schema_problem(fields) == "is not an iris-sweep results file (no schema version)"
    lost = pa.schema(list(fields)[1:], metadata={META_SCHEMA_VERSION: version})
    assert schema.schema_problem(lost, version=None) == "does not match the results schema"
    if version != schema.SCHEMA_VERSION:
        assert schema.schema_problem(own) == "is not of this schema version"
    later = fields.with_metadata({META_SCHEMA_VERSION: "99"})
    assert schema.schema_problem(later, version=None) == (
        "has schema version 99; this reader reads versions 1, 2, 3, 4, 5"
    )
