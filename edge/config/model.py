"""What every section's schema is built from: the strict base model, ids, positions."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# Ids appear in topics, file names, systemd instance names and URLs.
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
DeviceId = Annotated[str, Field(pattern=ID_PATTERN)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class Position(Model):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    alt_m: float | None = None


def variant_tag(name: str) -> str:
    """How a union's variant is named in an error location; never a key an operator writes."""
    return f"<{name}>"


def is_variant_tag(part: int | str) -> bool:
    return isinstance(part, str) and part.startswith("<") and part.endswith(">")
