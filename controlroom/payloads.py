"""Payload checks: JSON, schema_version, and the JSON Schemas of maskwatch_protocol/schemas/.

jsonschema is used when it is installed; otherwise a small built-in checker of the subset of JSON Schema
2020-12 that the schemas use. Both give one line saying what is wrong.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from maskwatch_protocol import KIND_TYPES as KINDS
from maskwatch_protocol import SCHEMA_DIR, SCHEMA_VERSION

from .common import _short, _type_name


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def _is_type(value: Any, name: str) -> bool:
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "string":
        return isinstance(value, str)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if isinstance(value, bool):
        return False
    if name == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if name == "number":
        return isinstance(value, (int, float))
    return False


def mini_validate(instance: Any, schema: Dict[str, Any], root: Dict[str, Any], path: str = "") -> Optional[str]:
    """The subset of JSON Schema 2020-12 that maskwatch_protocol/schemas uses; returns the first problem or None."""
    where = path or "payload"
    if "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            return "%s: unsupported $ref %s" % (where, ref)
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        err = mini_validate(instance, target, root, path)
        if err:
            return err
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(instance, t) for t in types):
            return "%s: expected %s, got %s" % (where, " or ".join(types), _type_name(instance))
    if "const" in schema and not _json_equal(instance, schema["const"]):
        return "%s: must be %s" % (where, json.dumps(schema["const"]))
    if "enum" in schema and not any(_json_equal(instance, e) for e in schema["enum"]):
        return "%s: %s is not one of %s" % (where, _short(json.dumps(instance)), ", ".join(schema["enum"]))
    if isinstance(instance, (int, float)) and not isinstance(instance, bool):
        if "minimum" in schema and instance < schema["minimum"]:
            return "%s: %s is less than %s" % (where, instance, schema["minimum"])
        if "maximum" in schema and instance > schema["maximum"]:
            return "%s: %s is greater than %s" % (where, instance, schema["maximum"])
    if isinstance(instance, str):
        if "minLength" in schema and len(instance) < schema["minLength"]:
            return "%s: shorter than %d characters" % (where, schema["minLength"])
        if "pattern" in schema and not re.search(schema["pattern"], instance):
            return "%s: %s does not match %s" % (where, _short(json.dumps(instance)), schema["pattern"])
    if isinstance(instance, list):
        if "minItems" in schema and len(instance) < schema["minItems"]:
            return "%s: fewer than %d items" % (where, schema["minItems"])
        if "maxItems" in schema and len(instance) > schema["maxItems"]:
            return "%s: more than %d items" % (where, schema["maxItems"])
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(instance):
                err = mini_validate(item, schema["items"], root, "%s/%d" % (path, i) if path else str(i))
                if err:
                    return err
    if isinstance(instance, dict):
        for key in schema.get("required", ()):
            if key not in instance:
                return "%s: required field %r is missing" % (where, key)
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, value in instance.items():
            sub = "%s/%s" % (path, key) if path else str(key)
            if key in props:
                err = mini_validate(value, props[key], root, sub)
            elif extra is False:
                err = "%s: unexpected field %s" % (where, _short(json.dumps(key)))
            elif isinstance(extra, dict):
                err = mini_validate(value, extra, root, sub)
            else:
                err = None
            if err:
                return err
    return None


def _reject_constant(name: str) -> Any:
    raise ValueError("%s is not valid JSON" % name)


class PayloadChecker:
    """Parse and check payloads against maskwatch_protocol/schemas/*.schema.json (jsonschema if available)."""

    def __init__(self, schema_dir: Path = SCHEMA_DIR, use_jsonschema: bool = True) -> None:
        self.schemas: Dict[str, Dict[str, Any]] = {}
        for kind, name in KINDS.items():
            self.schemas[kind] = json.loads((schema_dir / ("%s.schema.json" % name)).read_text())
        self.validators: Dict[str, Any] = {}
        if use_jsonschema:
            try:
                import jsonschema  # noqa: F401
                from jsonschema.validators import validator_for
            except ImportError:
                pass
            else:
                for kind, schema in self.schemas.items():
                    self.validators[kind] = validator_for(schema)(schema)
        self.engine = "jsonschema" if self.validators else "built-in"

    def parse(self, kind: str, data: bytes) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
        """(payload, None) or (None, why it was rejected)."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, "payload is not UTF-8 text (%s)" % exc.reason
        try:
            payload = json.loads(text, parse_constant=_reject_constant)
        except RecursionError:
            return None, "payload is not usable JSON (nested too deeply)"
        except ValueError as exc:
            return None, "payload is not valid JSON (%s)" % _short(str(exc), 100)
        if not isinstance(payload, dict):
            return None, "payload is a JSON %s, not an object" % _type_name(payload)
        version = payload.get("schema_version")
        if not (_is_type(version, "integer") and version == SCHEMA_VERSION):
            return None, "unsupported schema_version %s (this program reads version %d)" % (
                _short(json.dumps(version), 40),
                SCHEMA_VERSION,
            )
        err = self.check(kind, payload)
        if err:
            return None, "payload does not match the %s schema: %s" % (KINDS[kind], err)
        return payload, None

    def check(self, kind: str, payload: Dict[str, Any]) -> Optional[str]:
        validator = self.validators.get(kind)
        if validator is None:
            return mini_validate(payload, self.schemas[kind], self.schemas[kind])
        try:
            from jsonschema.exceptions import best_match

            err = best_match(validator.iter_errors(payload))
        except RecursionError:
            return "nested too deeply"
        if err is None:
            return None
        where = "/".join(str(p) for p in err.absolute_path) or "payload"
        return "%s: %s" % (where, _short(err.message, 160))
