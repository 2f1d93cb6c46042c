"""Partner systems of the FHIR facade: OAuth2 confidential clients (client credentials grant)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, String
from sqlalchemy.orm import Mapped, mapped_column

from guahao.core.db import Base, IdMixin, UTCDateTime


class FhirClient(IdMixin, Base):
    """A partner system (a regional platform, a map or search app). The secret is stored only as
    an argon2 hash; `scopes` is a space-separated SMART scope list it may be granted."""

    __tablename__ = "fhir_clients"

    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(100))
    scopes: Mapped[str] = mapped_column(String(400))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
