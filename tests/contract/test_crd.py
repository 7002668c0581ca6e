"""The LiveStream CRD generated from the pydantic spec: golden file, structure, parity.

``crds/livestreams.cascade.dev.yaml`` must be exactly ``render_crd()``; regenerate it on
purpose with ``cascade crd --write`` or ``CASCADE_REGEN_GOLDEN=1 pytest tests/contract``.
That the API server accepts the CRD and refuses invalid LiveStreams with it is proved on a
real control plane in ``tests/cluster/test_crd_apply.py``.
"""

from __future__ import annotations

import copy
import os
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, TypeAdapter

from cascade.cli import crd as crd_cli
from cascade.contract import crd
from cascade.contract.spec import KIND, NAME_PATTERN, LiveStream, LiveStreamSpec, is_valid_name

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / crd.CRD_PATH
REGEN = os.environ.get("CASCADE_REGEN_GOLDEN") == "1"
EXAMPLES = [*sorted((REPO / "examples").glob("*.yaml")), REPO / "examples/local/demo.yaml"]

# Keywords a structural schema node may hold (what the generator emits, and no more).
STRUCTURAL_KEYWORDS = {
    "type",
    "description",
    "nullable",
    "default",
    "enum",
    "format",
    "minimum",
    "maximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "x-kubernetes-validations",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
}


def version() -> dict[str, Any]:
    (only,) = crd.build_crd()["spec"]["versions"]
    result: dict[str, Any] = only
    return result


def root_schema() -> dict[str, Any]:
    schema: dict[str, Any] = version()["schema"]["openAPIV3Schema"]
    return schema


def nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path (``.spec.transcode.renditions[]``)."""
    yield path, schema
    for name, prop in schema.get("properties", {}).items():
        yield from nodes(prop, f"{path}.{name}")
    if "items" in schema:
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}{{}}")


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """``value`` with the schema's defaults filled in, the way the API server does it.

    A missing property with a default gets a copy of it, then every property (given or
    defaulted) is defaulted by its own schema.
    """
    if isinstance(value, dict):
        out = dict(value)
        properties = schema.get("properties", {})
        for key, prop in properties.items():
            if key not in out and "default" in prop:
                out[key] = copy.deepcopy(prop["default"])
        extra = schema.get("additionalProperties")
        return {
            key: apply_defaults(properties[key], item)
            if key in properties
            else apply_defaults(extra, item)
            if isinstance(extra, dict)
            else item
            for key, item in out.items()
        }
    if isinstance(value, list) and "items" in schema:
        return [apply_defaults(schema["items"], item) for item in value]
    return value


def models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds (``X``, ``X | None``, ``list[X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, typing.Annotated):
        return [m for arg in typing.get_args(annotation) for m in models_in(arg)]
    return []


def model_nodes(
    model: type[BaseModel], schema: dict[str, Any], path: str
) -> Iterator[tuple[type[BaseModel], dict[str, Any], str]]:
    """Each model reachable from ``model`` with its schema node, walking both together."""
    yield model, schema, path
    for name, field in model.model_fields.items():
        alias = field.alias or name
        prop = schema["properties"][alias]
        for inner in models_in(field.annotation):
            node = prop["items"] if prop.get("type") == "array" else prop
            yield from model_nodes(inner, node, f"{path}.{alias}")


def all_models() -> list[tuple[type[BaseModel], dict[str, Any], str]]:
    return list(model_nodes(LiveStreamSpec, root_schema()["properties"]["spec"], ".spec"))


# ---- golden file ------------------------------------------------------------------------


def test_crd_file_is_the_generated_crd() -> None:
    text = crd.render_crd()
    if REGEN:
        GOLDEN.write_text(text)
    assert GOLDEN.exists(), f"{GOLDEN} is missing: run `cascade crd --write`"
    assert GOLDEN.read_text() == text, "crds/ is stale: run `cascade crd --write`"
    assert yaml.safe_load(text) == crd.build_crd()


def test_the_charts_crd_is_the_same_file() -> None:
    chart = REPO / crd.CHART_CRD_PATH
    if REGEN:
        chart.write_text(crd.render_crd())
    assert chart.read_text() == crd.render_crd(), "helm/cascade/crds is stale: cascade crd --write"


def test_build_crd_returns_a_fresh_dict_each_time() -> None:
    first = crd.build_crd()
    first["spec"]["versions"][0]["additionalPrinterColumns"].clear()
    first["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"].clear()
    assert crd.build_crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    assert crd.render_crd() == crd.render_crd(crd.build_crd())


def test_cli_prints_and_writes_the_crd(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    crd_cli.add_parser(parser.add_subparsers(dest="command"))

    assert crd_cli.run(parser.parse_args(["crd"])) == 0
    assert capsys.readouterr().out == crd.render_crd()

    target = tmp_path / "out" / "crd.yaml"
    assert crd_cli.run(parser.parse_args(["crd", "--write", str(target)])) == 0
    assert target.read_text() == crd.render_crd()
    assert parser.parse_args(["crd", "--write"]).write == GOLDEN


# ---- the resource -----------------------------------------------------------------------


def test_names_scope_and_version() -> None:
    spec = crd.build_crd()["spec"]
    assert crd.build_crd()["metadata"]["name"] == "livestreams.cascade.dev"
    assert spec["group"] == "cascade.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": KIND,
        "listKind": "LiveStreamList",
        "plural": "livestreams",
        "singular": "livestream",
        "shortNames": ["lstream"],
        "categories": ["cascade"],
    }
    assert (version()["name"], version()["served"], version()["storage"]) == (
        "v1alpha1",
        True,
        True,
    )
    assert version()["subresources"] == {"status": {}}


def test_printer_columns() -> None:
    columns = [(c["name"], c["type"], c["jsonPath"]) for c in version()["additionalPrinterColumns"]]
    assert columns == [
        ("Phase", "string", ".status.phase"),
        ("Viewers", "integer", ".status.viewers"),
        ("Bitrate", "integer", ".status.inputBitrateKbps"),
        ("Ingest", "string", ".status.ingestURL"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]
    status = root_schema()["properties"]["status"]["properties"]
    for _, _, path in columns[:-1]:
        assert path.removeprefix(".status.") in status


def test_status_schema() -> None:
    status = root_schema()["properties"]["status"]
    assert set(status["properties"]) == {
        "observedGeneration",
        "conditions",
        "phase",
        "ingestURL",
        "playbackURL",
        "viewers",
        "inputBitrateKbps",
        "restarts",
        "transcoder",
        "recording",
    }
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conditions["items"]["properties"]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }
    assert set(conditions["items"]["required"]) == {"type", "status"}


def test_metadata_name_is_an_rfc1123_label() -> None:
    # ObjectMeta's own rule: the only restriction a CRD may place on metadata.
    name = root_schema()["properties"]["metadata"]["properties"]["name"]
    assert name["maxLength"] == 63
    assert is_valid_name("a" * 63) and not is_valid_name("a" * 64)
    assert name["pattern"] == NAME_PATTERN
    assert set(root_schema()["properties"]["metadata"]["properties"]) == {"name"}


# ---- structural -------------------------------------------------------------------------


def test_schema_is_structural() -> None:
    for path, node in nodes(root_schema()):
        assert set(node) <= STRUCTURAL_KEYWORDS, f"{path}: {set(node) - STRUCTURAL_KEYWORDS}"
        assert node.get("type") in {"object", "array", "string", "integer", "boolean"}, path
        if node["type"] == "object" and path not in {".metadata"}:
            # Either named properties or a map, never both, never neither.
            assert ("properties" in node) != ("additionalProperties" in node), path
        if node["type"] == "array":
            assert "items" in node, path
        assert node.get("nullable", True) is True, path
        for key in node.get("required", []):
            assert key in node["properties"], f"{path}: required {key} is not a property"


def test_schema_text_has_no_json_schema_leftovers() -> None:
    text = yaml.safe_dump(root_schema())
    for word in ("$ref", "$defs", "anyOf", "oneOf", "allOf", "title:", "type: 'null'"):
        assert word not in text


def test_null_unions_are_nullable_without_null_defaults() -> None:
    hardware = root_schema()["properties"]["spec"]["properties"]["transcode"]["properties"][
        "hardware"
    ]
    assert hardware == {
        "type": "string",
        "enum": ["nvenc", "cpu"],
        "nullable": True,
        "description": "nvenc or cpu; unset: nvenc when a GPU is requested, else cpu",
    }


def test_maps_of_strings() -> None:
    scheduling = root_schema()["properties"]["spec"]["properties"]["scheduling"]
    assert scheduling["properties"]["nodeSelector"] == {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "default": {},
    }


def test_unsupported_json_schema_is_refused() -> None:
    with pytest.raises(ValueError, match="unions"):
        crd._structural({"anyOf": [{"type": "string"}, {"type": "integer"}]}, {})
    with pytest.raises(ValueError, match="keyword"):
        crd._structural({"type": "string", "const": "x"}, {})


# ---- parity with the pydantic models ----------------------------------------------------


def test_every_field_appears_under_its_camel_case_name() -> None:
    seen = 0
    for model, node, path in all_models():
        aliases = {field.alias or name for name, field in model.model_fields.items()}
        assert set(node["properties"]) == aliases, path
        required = {
            field.alias or name for name, field in model.model_fields.items() if field.is_required()
        }
        assert set(node.get("required", [])) == required, path
        seen += len(aliases)
    assert seen > 40
    transcode = root_schema()["properties"]["spec"]["properties"]["transcode"]
    assert "videoBitrateKbps" in transcode["properties"]["renditions"]["items"]["properties"]


def test_defaults_match_the_pydantic_defaults() -> None:
    checked = 0
    for model, node, path in all_models():
        for name, field in model.model_fields.items():
            alias = field.alias or name
            prop = node["properties"][alias]
            if field.is_required():
                assert "default" not in prop, f"{path}.{alias}"
                continue
            default = field.get_default(call_default_factory=True)
            if default is None:
                # None is an absent field: no default, and null allowed.
                assert "default" not in prop, f"{path}.{alias}"
                assert prop["nullable"] is True, f"{path}.{alias}"
                continue
            wire = TypeAdapter(Any).dump_python(
                default, by_alias=True, mode="json", exclude_none=True
            )
            assert prop["default"] == wire, f"{path}.{alias}"
            checked += 1
    assert checked > 30


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_server_defaulting_gives_the_pydantic_spec(path: Path) -> None:
    manifest = yaml.safe_load(path.read_text())
    stream = LiveStream.model_validate(manifest)

    defaulted = apply_defaults(root_schema()["properties"]["spec"], manifest["spec"])

    assert defaulted == stream.spec.model_dump(by_alias=True, mode="json", exclude_none=True)


def test_minimal_spec_defaults_to_the_design_defaults() -> None:
    minimal = {"source": {"type": "test", "test": {}}}
    defaulted = apply_defaults(root_schema()["properties"]["spec"], minimal)
    expected = LiveStreamSpec.model_validate(minimal)
    assert defaulted == expected.model_dump(by_alias=True, mode="json", exclude_none=True)


def test_every_validated_model_has_cel_rules() -> None:
    validated = set()
    for model, node, path in all_models():
        decorators = model.__pydantic_decorators__
        after = [d for d in decorators.model_validators.values() if d.info.mode == "after"]
        if after or decorators.field_validators:
            validated.add(model)
        if model in crd.RULES:
            assert node["x-kubernetes-validations"] == crd.RULES[model], path
        else:
            assert "x-kubernetes-validations" not in node, path
    assert validated == set(crd.RULES)


def resolve(node: dict[str, Any], field_path: str) -> dict[str, Any]:
    for part in field_path.removeprefix(".").split("."):
        node = node["properties"][part]
    return node


def test_every_rule_names_its_field() -> None:
    rules = 0
    for path, node in nodes(root_schema()):
        for rule in node.get("x-kubernetes-validations", []):
            assert set(rule) <= {"rule", "message", "messageExpression", "fieldPath", "reason"}
            assert ("message" in rule) != ("messageExpression" in rule), rule
            field = rule["fieldPath"]
            resolve(node, field)  # a field of the schema
            words = rule.get("message", rule.get("messageExpression", ""))
            # The message repeats the field the way format_validation_error spells it.
            assert field.split(".")[-1] in words, (path, rule)
            assert rule.get("reason", "FieldValueRequired") in {
                "FieldValueRequired",
                "FieldValueInvalid",
            }
            rules += 1
    assert rules >= 14


def test_cel_cost_bounds() -> None:
    # The API server estimates each rule's worst case: lists the rules walk are bounded,
    # and so are the strings they compare.
    spec = root_schema()["properties"]["spec"]
    renditions = spec["properties"]["transcode"]["properties"]["renditions"]
    assert renditions["maxItems"] == 8
    assert renditions["items"]["properties"]["name"]["maxLength"] == 31
