"""Base classes and field types for request and response bodies."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Latitude = Annotated[float, Field(ge=-90.0, le=90.0, allow_inf_nan=False, examples=[60.1699])]
Longitude = Annotated[float, Field(ge=-180.0, le=180.0, allow_inf_nan=False, examples=[24.9384])]


class RequestBody(BaseModel):
    """Request bodies: unknown fields and type coercion ("12" for 12) are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ResponseBody(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Point(ResponseBody):
    latitude: float
    longitude: float


class MoneyOut(ResponseBody):
    amount: str = Field(examples=["12.40"], description="Decimal string, never a float")
    currency: str = Field(examples=["USD"])
