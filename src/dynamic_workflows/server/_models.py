"""Admin API bodies: pydantic at the trust boundary, strict and closed (unknown keys refused)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

MODULE_NAME = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\.py$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class DeployBody(_Body):
    """New code for a tenant: module file name -> source; ``index.py`` is the main module."""

    files: dict[str, str] = Field(min_length=1, max_length=256)

    @field_validator("files")
    @classmethod
    def _names(cls, files: dict[str, str]) -> dict[str, str]:
        import re

        bad = [name for name in files if not re.match(MODULE_NAME, name)]
        if bad:
            raise ValueError(
                f"module file names must be dotted identifiers ending in .py: {bad[:3]}"
            )
        if "index.py" not in files:
            raise ValueError("the main module index.py is missing")
        return files


class CreateBody(_Body):
    id: str | None = Field(default=None, min_length=1, max_length=100)
    params: Any = None


class EventBody(_Body):
    type: str = Field(min_length=1, max_length=100, pattern=r"^[a-zA-Z0-9_][a-zA-Z0-9\-_]*$")
    payload: Any = None


class PlaygroundBody(_Body):
    code: str = Field(min_length=1, max_length=256 * 1024)
    payload: Any = None


def openapi_schemas() -> dict[str, Any]:
    models: dict[str, type[BaseModel]] = {
        "DeployBody": DeployBody,
        "CreateBody": CreateBody,
        "EventBody": EventBody,
        "PlaygroundBody": PlaygroundBody,
    }
    return {
        name: model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, model in models.items()
    }
