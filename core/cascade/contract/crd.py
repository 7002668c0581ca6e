"""The ``livestreams.cascade.dev`` CustomResourceDefinition, generated from the pydantic spec.

Pure: ``build_crd()`` turns ``LiveStreamSpec``'s JSON schema into a *structural* OpenAPI v3
schema (every ``$ref`` inlined, ``X | None`` as ``nullable``, no ``title``, no
``additionalProperties: false``) and adds what JSON schema cannot say:

* the defaults of ``default_factory`` fields, in full: the API server validates a default
  against the CEL rules as it is, without filling in its properties' own defaults;
* the cross-field rules of the models' validators, as CEL ``x-kubernetes-validations`` whose
  ``fieldPath`` and message name the field, like ``format_validation_error`` does;
* the status schema, the status subresource, printer columns, short name and category.

Unknown fields need no schema keyword: the API server prunes them, and ``kubectl apply``'s
default ``--validate=strict`` turns that into an error naming the field
(``strict decoding error: unknown field "spec.delivery.partDuration"``).

``crds/livestreams.cascade.dev.yaml`` is this function's output (``cascade crd --write``);
``tests/contract/test_crd.py`` checks that they match.
"""

from __future__ import annotations

import copy
from typing import Any, Final

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from cascade.contract.spec import (
    KIND,
    NAME_PATTERN,
    Delivery,
    LiveStreamSpec,
    RtmpSource,
    RtpSource,
    Source,
    SourceType,
    SrtSource,
    Transcode,
)

GROUP: Final = "cascade.dev"
VERSION: Final = "v1alpha1"
PLURAL: Final = "livestreams"
SINGULAR: Final = "livestream"
SHORT_NAMES: Final = ("lstream",)
CATEGORIES: Final = ("cascade",)
NAME: Final = f"{PLURAL}.{GROUP}"
# Where `cascade crd --write` puts it, relative to the repository root.
CRD_PATH: Final = f"crds/{NAME}.yaml"
# The Helm chart installs the same file from its crds/ directory.
CHART_CRD_PATH: Final = f"helm/cascade/crds/{NAME}.yaml"

# Schema keywords copied as they are; anything else in the JSON schema is an error, so a
# new pydantic construct cannot slip into the CRD unchecked.
_KEPT: Final = frozenset(
    {
        "type",
        "description",
        "default",
        "enum",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
        "required",
        "x-kubernetes-validations",
    }
)
_NULL: Final = {"type": "null"}


def _rule(
    rule: str,
    *,
    message: str | None = None,
    message_expression: str | None = None,
    field_path: str | None = None,
    reason: str | None = None,
) -> dict[str, str]:
    out = {"rule": rule}
    if message is not None:
        out["message"] = message
    if message_expression is not None:
        out["messageExpression"] = message_expression
    if field_path is not None:
        out["fieldPath"] = field_path
    if reason is not None:
        out["reason"] = reason
    return out


def _source_rules() -> list[dict[str, str]]:
    # `type: srt`, `rtmp` or `test` alone means that block with its defaults (the model
    # fills it in before validating); only `rtp` has a required setting, so only its block
    # must be written out.
    rules = [
        _rule(
            "self.type != 'rtp' || has(self.rtp)",
            message="source.rtp is required when source.type is rtp",
            field_path=".rtp",
            reason="FieldValueRequired",
        )
    ]
    for block in SourceType:
        rules.append(
            _rule(
                f"self.type == '{block.value}' || !has(self.{block.value})",
                message_expression=(
                    f'"source.type is " + self.type + " but source.{block.value} is set; '
                    'set only the block of the declared type"'
                ),
                field_path=f".{block.value}",
            )
        )
    return rules


# The models' cross-field validators as CEL, at the same level (``self`` is the model).
# Each mirrors the pydantic validator named in the comment, with its message.
RULES: Final[dict[type[BaseModel], list[dict[str, str]]]] = {
    # Source._settings_match_type
    Source: _source_rules(),
    # SrtSource._caller_needs_host
    SrtSource: [
        _rule(
            "self.mode != 'caller' || (has(self.host) && self.host != '')",
            message="srt.host is required when srt.mode is caller",
            field_path=".host",
            reason="FieldValueRequired",
        )
    ],
    # RtmpSource._pull_needs_url
    RtmpSource: [
        _rule(
            "self.mode != 'pull' || (has(self.url) && self.url != '')",
            message="rtmp.url is required when rtmp.mode is pull",
            field_path=".url",
            reason="FieldValueRequired",
        ),
        _rule(
            "self.mode != 'pull' || !has(self.url) || self.url == ''"
            " || self.url.startsWith('rtmp://') || self.url.startsWith('rtmps://')",
            message="rtmp.url must start with rtmp:// or rtmps://",
            field_path=".url",
        ),
    ],
    # RtpSource._looks_like_sdp
    RtpSource: [
        _rule(
            "self.sdp.contains('v=0') && self.sdp.contains('m=')",
            message="rtp.sdp must be an SDP description with v=0 and at least one m= line",
            field_path=".sdp",
        )
    ],
    # Transcode._unique_names
    Transcode: [
        _rule(
            "self.renditions.all(a, self.renditions.exists_one(b, b.name == a.name))",
            message="transcode.renditions[].name must be unique",
            field_path=".renditions",
        ),
        _rule(
            "self.mode != 'passthrough' || self.renditions.size() == 1",
            message="transcode.renditions must hold exactly one rendition in passthrough mode",
            field_path=".renditions",
        ),
    ],
    # Delivery._parts_divide_segments
    Delivery: [
        _rule(
            "self.partDurationMs <= self.segmentDurationMs",
            message="delivery.partDurationMs must not exceed delivery.segmentDurationMs",
            field_path=".partDurationMs",
        ),
        _rule(
            "self.partDurationMs > self.segmentDurationMs"
            " || self.segmentDurationMs % self.partDurationMs == 0",
            message="delivery.partDurationMs must divide delivery.segmentDurationMs",
            field_path=".partDurationMs",
        ),
    ],
    # LiveStreamSpec._recorded_renditions_exist, _nvenc_needs_gpu and
    # _segments_hold_whole_frames
    LiveStreamSpec: [
        _rule(
            "!has(self.recording) || !has(self.recording.renditions)"
            " || self.recording.renditions.all(n, self.transcode.renditions.exists(r, r.name == n))",
            message="recording.renditions must name renditions of transcode.renditions[].name",
            field_path=".recording.renditions",
        ),
        _rule(
            "!has(self.transcode.hardware) || self.transcode.hardware != 'nvenc'"
            " || self.scheduling.gpus >= 1",
            message="transcode.hardware nvenc requires scheduling.gpus >= 1",
            field_path=".scheduling.gpus",
        ),
        *(
            _rule(
                f"self.transcode.mode != 'transcode'"
                f" || self.transcode.frameRate * self.delivery.{field} % 1000 == 0",
                # format(), not string(): the cost estimator takes string(int) as unbounded.
                message_expression=(
                    f"'delivery.{field} %d is not a whole number of frames"
                    " at transcode.frameRate %d'"
                    f".format([self.delivery.{field}, self.transcode.frameRate])"
                ),
                field_path=f".delivery.{field}",
            )
            for field in ("segmentDurationMs", "partDurationMs")
        ),
    ],
}


class _FactoryDefaults(GenerateJsonSchema):
    """Also write the defaults of ``default_factory`` fields (pydantic leaves them out)."""

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            rest = {k: v for k, v in schema.items() if k != "default_factory"}
            schema = {**rest, "default": factory()}  # type: ignore[typeddict-item]
        return super().default_schema(schema)


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def _structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """One JSON schema node as a structural schema node (recursively)."""
    node = {k: v for k, v in node.items() if k != "title"}
    if "$ref" in node:
        target = defs[node.pop("$ref").removeprefix("#/$defs/")]
        # Siblings of a $ref (default, description) win over the target's.
        return {**_structural(target, defs), **_structural(node, defs)}
    if "anyOf" in node:
        variants = node.pop("anyOf")
        others = [v for v in variants if v != _NULL]
        if len(variants) != 2 or len(others) != 1:
            raise ValueError(f"only `X | None` unions can be expressed, not {variants}")
        inner = _structural(others[0], defs)
        return {**inner, "nullable": True, **_structural(node, defs)}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: _structural(prop, defs) for name, prop in value.items()}
        elif key == "items":
            out[key] = _structural(value, defs)
        elif key == "additionalProperties":
            if isinstance(value, dict):
                out[key] = _structural(value, defs)
            elif value is not False:
                raise ValueError("additionalProperties: true cannot be expressed structurally")
            # false: the API server prunes unknown fields and strict validation names them.
        elif key == "default":
            if value is not None:  # an absent field is pydantic's None
                out[key] = _drop_none(value)
        elif key in _KEPT:
            out[key] = value
        else:
            raise ValueError(f"JSON schema keyword {key!r} has no structural equivalent")
    return out


def spec_schema() -> dict[str, Any]:
    """The structural schema of ``spec``, with the models' rules attached."""
    raw = LiveStreamSpec.model_json_schema(
        by_alias=True, mode="validation", schema_generator=_FactoryDefaults
    )
    defs: dict[str, Any] = raw.pop("$defs", {})
    for model, model_rules in RULES.items():
        target = raw if model is LiveStreamSpec else defs[model.__name__]
        target["x-kubernetes-validations"] = copy.deepcopy(model_rules)
    return _structural(raw, defs)


def _condition_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "A standard condition: Ready and the detail conditions, each with one owner.",
        "required": ["type", "status"],
        "properties": {
            "type": {"type": "string", "maxLength": 316},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": {"type": "string", "maxLength": 1024, "description": "CamelCase"},
            "message": {"type": "string", "maxLength": 32768},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
            "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
        },
    }


def status_schema() -> dict[str, Any]:
    """What the operator writes; users never do (the status subresource)."""
    return {
        "type": "object",
        "description": "Written by the operator: conditions, and a phase derived from them.",
        "properties": {
            "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
            "conditions": {
                "type": "array",
                "items": _condition_schema(),
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
            "phase": {
                "type": "string",
                "description": "For display only, derived from the conditions.",
            },
            "ingestURL": {"type": "string", "description": "Where the encoder sends to."},
            "recording": {
                "type": "object",
                "description": "The recording as the running transcoder wrote it to the "
                "object store: bytes, bytes waiting for the store, segments dropped past the "
                "backlog, program date-times of the oldest and newest segment written.",
                "properties": {
                    "bytes": {"type": "integer", "minimum": 0},
                    "backlogBytes": {"type": "integer", "minimum": 0},
                    "lostSegments": {"type": "integer", "minimum": 0},
                    "oldest": {"type": "string", "format": "date-time"},
                    "newest": {"type": "string", "format": "date-time"},
                },
            },
            "playbackURL": {"type": "string", "description": "The multivariant playlist."},
            "viewers": {"type": "integer", "minimum": 0},
            "inputBitrateKbps": {"type": "integer", "minimum": 0},
            "restarts": {
                "type": "integer",
                "minimum": 0,
                "description": "Transcoder pods recreated after a failure, plus container "
                "restarts of the current pod.",
            },
            "transcoder": {
                "type": "object",
                "description": "The operator's memory of the transcoder pod, so that a "
                "restarted operator tells a lost pod from one it never made.",
                "properties": {
                    "pod": {"type": "string"},
                    "podUID": {"type": "string"},
                    "startedAt": {"type": "string", "format": "date-time"},
                    "recreations": {"type": "integer", "minimum": 0},
                    "consecutiveFailures": {"type": "integer", "minimum": 0},
                    "lastFailureTime": {"type": "string", "format": "date-time"},
                    "stoppedAt": {"type": "string", "format": "date-time"},
                },
            },
        },
    }


def _resource_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "A live stream: ingest, transcode to an LL-HLS ladder, deliver at the edges.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            # Only name and generateName may be restricted here: ObjectMeta's name rule.
            "metadata": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 63, "pattern": NAME_PATTERN}
                },
            },
            "spec": spec_schema(),
            "status": status_schema(),
        },
    }


_PRINTER_COLUMNS: Final = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Viewers", "type": "integer", "jsonPath": ".status.viewers"},
    {
        "name": "Bitrate",
        "type": "integer",
        "jsonPath": ".status.inputBitrateKbps",
        "description": "Input bitrate, kbps",
    },
    {"name": "Ingest", "type": "string", "jsonPath": ".status.ingestURL"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def build_crd() -> dict[str, Any]:
    """The CustomResourceDefinition, as the dict ``kubectl apply`` takes."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": NAME},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": _resource_schema()},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": copy.deepcopy(_PRINTER_COLUMNS),
                }
            ],
        },
    }


HEADER: Final = (
    "# Generated from cascade.contract.spec by `cascade crd --write`: do not edit.\n"
    "# tests/contract/test_crd.py checks that it matches.\n"
)


def render_crd(crd: dict[str, Any] | None = None) -> str:
    """The CRD as the YAML text of ``crds/``: keys sorted, so the output is stable."""
    body = yaml.safe_dump(
        build_crd() if crd is None else crd, sort_keys=True, width=100, allow_unicode=True
    )
    return HEADER + body
