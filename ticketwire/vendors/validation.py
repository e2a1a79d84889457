"""Reading a webhook body into a vendor's pydantic envelope, failures told as `MalformedEvent`."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from ticketwire.errors import MalformedEvent
from ticketwire.vendors.strictjson import refuse_non_finite

Model = TypeVar("Model", bound=BaseModel)


def validate_json(model: type[Model], body: bytes) -> Model:
    """`body` as `model`; strict JSON only (no NaN or Infinity)."""
    try:
        env = model.model_validate_json(body)
    except ValidationError as exc:
        # A NaN or Infinity literal is reported as what it is (not JSON), wherever it stands.
        refuse_non_finite(body)
        raise malformed(exc) from None
    refuse_non_finite(body)
    return env


def malformed(exc: ValidationError) -> MalformedEvent:
    """The first validation error, as the field it names and what is wrong with it."""
    err = exc.errors(include_url=False)[0]
    if err["type"] == "json_invalid":
        detail = err["msg"].removeprefix("Invalid JSON: ")
        return MalformedEvent(f"body is not valid JSON: {detail}")
    field = ".".join(str(p) for p in err["loc"]) or None
    if err["type"] == "missing":
        return MalformedEvent("required field is missing", field=field)
    return MalformedEvent(err["msg"], field=field)
