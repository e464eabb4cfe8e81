"""The JSON API of accounts: who one is, users, API tokens, passwords and the audit table."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from slipway.console import security
from slipway.console.deps import (
    ADMIN,
    API,
    Database,
    Page,
    Service,
    TokenId,
    call,
    remote,
)
from slipway.console.shapes import jsonable

router = APIRouter(prefix="/api/v1")


# Request bodies

class NewUserRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    role: str
    environments: list[str] = Field(default_factory=list)
    password: str = Field(repr=False)


class NewTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expires: str | None = Field(None, description="How long it lasts: 12h, 30d, 2w... (at most "
                                "3650d). None: until revoked")


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current_password: str = Field(repr=False)
    new_password: str = Field(repr=False, description="At least "
                              f"{security.MIN_PASSWORD_LENGTH} characters")


@router.get("/audit", tags=["admin"])
async def audit(identity: ADMIN, db: Database, action: str | None = None,
                actor: str | None = None, page: Page = 1,
                per_page: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
    rows = await call(lambda: db.audit_rows(per_page, (page - 1) * per_page, action, actor))
    return {"audit": rows, "page": page, "per_page": per_page}


@router.get("/me", tags=["admin"])
async def me(identity: API) -> dict[str, Any]:
    user = identity.user
    return {"name": user.name, "role": user.role, "environments": list(user.environments)}


# Users

@router.get("/users", tags=["admin"])
async def users(identity: ADMIN, db: Database) -> dict[str, Any]:
    return {"users": [{"name": u.name, "role": u.role, "environments": list(u.environments)}
                      for u in await call(db.users)]}


@router.post("/users", tags=["admin"], status_code=201)
async def add_user(body: NewUserRequest, identity: ADMIN, request: Request,
                   console: Service) -> dict[str, Any]:
    user = await call(console.add_user, identity.user.name, body.name, body.role,
                      body.environments, body.password, remote(request))
    return {"name": user.name, "role": user.role, "environments": list(user.environments)}


@router.delete("/users/{name}", tags=["admin"])
async def delete_user(name: str, identity: ADMIN, request: Request,
                      console: Service) -> dict[str, Any]:
    """Delete an account with its tokens and sessions; its pending requests are cancelled."""
    cancelled = await call(console.delete_user, identity.user, name, remote(request))
    return {"deleted": name, "cancelled_approvals": cancelled}


# Tokens and passwords

@router.get("/users/{name}/tokens", tags=["tokens"])
async def list_tokens(name: str, identity: API, request: Request,
                      console: Service) -> dict[str, Any]:
    """A user's API tokens (admins: anyone's; others: their own), never their secrets."""
    tokens = await call(console.tokens, identity.user, name, remote(request))
    return {"name": name, "tokens": jsonable(tokens)}


@router.post("/users/{name}/tokens", tags=["tokens"], status_code=201)
async def add_token(name: str, identity: API, request: Request, console: Service,
                    body: NewTokenRequest | None = None) -> dict[str, Any]:
    """A new API token for a user (admins: anyone; others: themselves). Shown once."""
    token = await call(console.new_token, identity.user, name, remote(request),
                       body.expires if body else None)
    return jsonable(token)


@router.delete("/tokens/{token_id}", tags=["tokens"])
async def revoke_token(token_id: TokenId, identity: API, request: Request,
                       console: Service) -> dict[str, Any]:
    """Revoke one API token (admins: anyone's; others: their own)."""
    return await call(console.revoke_token, identity.user, token_id, remote(request))


@router.post("/me/password", tags=["tokens"])
async def change_password(body: PasswordChange, identity: API, request: Request,
                          console: Service) -> dict[str, Any]:
    """Change one's own password; every other session of the account ends."""
    ended = await call(console.change_password, identity.user, body.current_password,
                       body.new_password, remote(request), identity.session_digest)
    return {"name": identity.user.name, "changed": True, "ended_sessions": ended}
