"""Who is calling: the authenticated principal, independent of how it was authenticated."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    RIDER = "rider"
    DRIVER = "driver"
    ADMIN = "admin"


ID_PREFIX = {Role.RIDER: "rdr", Role.DRIVER: "drv", Role.ADMIN: "adm"}


@dataclass(frozen=True, slots=True)
class Principal:
    subject_id: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN
