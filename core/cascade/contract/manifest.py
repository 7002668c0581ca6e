"""LiveStream manifests as text (the YAML files of local mode, the pod's spec): parse and check."""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError

from cascade.contract.spec import LiveStream, format_validation_error


class ManifestError(ValueError):
    """An invalid manifest; ``problems`` has one ``field.path: rule`` line each."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: invalid LiveStream: " + "; ".join(problems))


def parse_manifest(text: str, *, source: str = "<manifest>") -> LiveStream:
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ManifestError(source, [f"not valid YAML: {exc}"]) from exc
    if not isinstance(data, dict):
        raise ManifestError(source, ["a LiveStream manifest must be a mapping"])
    try:
        return LiveStream.model_validate(data)
    except ValidationError as exc:
        raise ManifestError(source, format_validation_error(exc)) from exc
