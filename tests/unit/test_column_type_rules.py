"""Unit tests of the column-type rules that are not preflight's own: the Python side of the text-form converter."""

from __future__ import annotations

import re

import pytest

from pgmigrate.core.column_types import TEXT_FORM_TYPES
from pgmigrate.core.project import PROJECT_ROOT

pytestmark = pytest.mark.unit

CONVERTER = (
    PROJECT_ROOT / "include/converters/src/main/java/local/pgmigration/converters/PostgresTextFormConverter.java"
)


def test_text_form_types_are_the_converters_own():
    """TEXT_FORM_TYPES mirrors PostgresTextFormConverter's SCALARS: a type added there but not here would leave
    domains over it on Debezium's own conversion, silently."""
    scalars = CONVERTER.read_text().split("SCALARS = Map.ofEntries(")[1].split(";")[0]
    assert set(re.findall(r'Map\.entry\("(\w+)"', scalars)) == TEXT_FORM_TYPES
