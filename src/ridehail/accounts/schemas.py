from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import EmailStr, Field

from ridehail.web.schemas import RequestBody, ResponseBody

Name = Field(min_length=1, max_length=200)
Password = Field(min_length=8, max_length=256, description="At least 8 characters")


class RiderCreate(RequestBody):
    name: str = Name
    email: EmailStr
    password: str = Password
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9 ()-]{5,32}$")


class RiderOut(ResponseBody):
    rider_id: str
    name: str
    email: str
    phone: str | None = None
    created_at: datetime


class TokenRequest(RequestBody):
    email: EmailStr
    password: str = Field(min_length=1, max_length=256)


class TokenOut(ResponseBody):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the scheme name, not a secret
    expires_in: int
    subject_id: str
    role: str
