"""The JSON Schemas are the source of truth; these tests hold the Python side to them."""

import json

import jsonschema
import pytest

from corekit.schemas import RECORD_KINDS, load_schema, schema_dir
from datakit import export, formats, readers, records


@pytest.mark.parametrize("name", list(RECORD_KINDS) + ["manifest", "pipeline"])
def test_schemas_are_valid_draft7(name):
    jsonschema.Draft7Validator.check_schema(load_schema(name))


def test_every_record_kind_has_a_schema_file_and_no_stray_files():
    files = sorted(p.stem for p in (schema_dir() / "records").glob("*.json"))
    assert files == sorted(RECORD_KINDS)


def test_shared_definitions_are_identical_across_record_schemas():
    defs = {k: load_schema(k)["definitions"] for k in RECORD_KINDS}
    for name in ("id", "meta", "message", "messages", "tool_call"):
        versions = {json.dumps(d[name], sort_keys=True) for d in defs.values() if name in d}
        assert len(versions) == 1, f"definition {name!r} differs between record schemas"
    for kind in RECORD_KINDS:
        props = load_schema(kind)["properties"]
        assert props["id"] == {"$ref": "#/definitions/id"} and props["meta"] == {
            "$ref": "#/definitions/meta"
        }


def test_kind_signatures_use_schema_fields():
    for kind, keys in records._KIND_SIGNATURES:
        assert set(keys) <= set(load_schema(kind)["properties"]), (kind, keys)


def test_python_enumerations_match_the_schemas():
    assert list(RECORD_KINDS) == load_schema("manifest")["properties"]["kind"]["enum"]
    pipe = load_schema("pipeline")["definitions"]["import"]["properties"]
    assert list(formats.IMPORT_FORMATS) == pipe["format"]["enum"]
    assert list(RECORD_KINDS) == pipe["kind"]["enum"]
    roles = load_schema("chat")["definitions"]["message"]["properties"]["role"]["enum"]
    assert set(export._ROLE_TO_SHAREGPT) == set(roles)
    assert set(readers._SHAREGPT_ROLES.values()) == set(roles)


def test_infer_kind_round_trips_on_minimal_records():
    minimal = {
        "chat": {"messages": [{"role": "user", "content": "x"}]},
        "instruction": {"instruction": "x", "output": "y"},
        "preference": {"prompt": "x", "chosen": "a", "rejected": "b"},
        "unpaired": {"prompt": "x", "completion": "a", "label": True},
        "eval_item": {"prompt": "x"},
        "prediction": {"item_id": "x", "output": "y"},
    }
    for kind, rec in minimal.items():
        assert records.infer_kind(rec) == kind
        jsonschema.validate(rec, load_schema(kind))


def test_the_committed_schema_is_current_with_the_registries():
    """The op, method and metric lists of schemas/pipeline.json are written from OPS,
    METHODS and METRICS by `make schema`; an op added to OPS alone fails here."""
    from tools.schema import generate, render

    current = (schema_dir() / "pipeline.json").read_text(encoding="utf-8")
    new, problems = generate(json.loads(current))
    assert problems == []
    assert render(new) == current, "run `make schema`"


def test_the_schema_generator_names_an_op_without_parameters(monkeypatch):
    import datakit.ops as ops
    from tools.schema import generate

    monkeypatch.setitem(ops.OPS, "shout", ops.OPS["filter"])
    new, problems = generate(load_schema("pipeline"))
    assert problems == ["op shout: no definitions/params_shout in the schema"]
    assert new["definitions"]["step"]["properties"]["op"]["enum"][-1] == "shout"
