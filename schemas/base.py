"""The base of every wire message: strict types, no NaN, unknown fields kept aside.

Readers ignore fields they do not know (the contract lets producers add fields within v1), so
unknown fields are not errors: they are kept in ``model_extra``, out of the way of the known
ones, and written back unchanged when the message is re-encoded.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class WireModel(BaseModel):
    model_config = ConfigDict(
        extra="allow",
        strict=True,
        allow_inf_nan=False,
        validate_default=False,
        ser_json_inf_nan="null",
        populate_by_name=True,
    )
