"""Tenants and their API keys: created by the CLI, keys shown once and stored only hashed."""

from __future__ import annotations

import hashlib
import secrets
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import ApiKey, Tenant
from app.errors import Conflict, InvalidInput, NotFound

KEY_PREFIX = "vn_"


def generate_api_key() -> str:
    """A new random API key (256 bits), recognisable by its ``vn_`` prefix."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """The stored form of a key: a fast hash is enough for 256-bit random secrets."""
    return hashlib.sha256(key.encode()).hexdigest()


def create_tenant(
    session: Session, name: str, *, rate_limit_per_minute: int | None = None,
    upload_quota_bytes: int | None = None,
) -> tuple[Tenant, str]:
    """Create a tenant with a webhook secret and a first API key; returns the key in plain text."""
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput("a tenant name must have 1 to 200 characters",
                           code="invalid_tenant_name")
    if rate_limit_per_minute is not None and rate_limit_per_minute < 1:
        raise InvalidInput("the rate limit must be at least 1 request per minute")
    if upload_quota_bytes is not None and upload_quota_bytes < 1:
        raise InvalidInput("the upload quota must be at least 1 byte")
    if session.scalar(select(Tenant.id).where(Tenant.name == name)) is not None:
        raise Conflict(f"a tenant named {name!r} already exists", code="tenant_exists")
    tenant = Tenant(
        name=name, rate_limit_per_minute=rate_limit_per_minute,
        upload_quota_bytes=upload_quota_bytes, webhook_secret=secrets.token_hex(32),
    )
    session.add(tenant)
    session.flush()
    _, key = create_api_key(session, tenant.id)
    return tenant, key


def create_api_key(
    session: Session, tenant_id: uuid.UUID, name: str = "default"
) -> tuple[ApiKey, str]:
    """Add an API key to a tenant; the plain key is returned once and never stored."""
    if session.get(Tenant, tenant_id) is None:
        raise NotFound("no such tenant", code="tenant_not_found")
    plain = generate_api_key()
    row = ApiKey(tenant_id=tenant_id, name=name, prefix=plain[:12], key_hash=hash_api_key(plain))
    session.add(row)
    session.flush()
    return row, plain


def revoke_api_key(session: Session, key_id: uuid.UUID) -> ApiKey:
    """Revoke a key; requests with it fail from then on (API processes cache keys briefly)."""
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound("no such API key", code="api_key_not_found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return row


def get_tenant_by_name(session: Session, name: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        raise NotFound(f"no tenant named {name!r}", code="tenant_not_found")
    return tenant


def list_tenants(session: Session) -> list[Tenant]:
    return list(session.scalars(select(Tenant).order_by(Tenant.name)))
