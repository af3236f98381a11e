"""Optional Bearer API keys, compared in constant time (vLLM's scheme: sha256 digests +
``hmac.compare_digest`` against every key, no early exit). Keys are never logged or echoed.

- No keys configured: the data routes are open (development); /admin/* is disabled (403 admin_disabled).
- ``SIMGR_API_KEYS`` / ``SIMGR_ADMIN_KEYS`` set: data routes need any key, /admin/* needs an admin key
  (a valid data key there gets 403). /healthz, /readyz and /metrics stay public.
- /admin/* is disabled whenever no admin key is configured, whatever else is: reloads then come from
  SIGHUP or a followed publish root, never from anyone who can reach the port.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.errors import ServiceError
from service.settings import Settings

_CHALLENGE = {"WWW-Authenticate": "Bearer"}
bearer = HTTPBearer(auto_error=False, description="API key (SIMGR_API_KEYS / SIMGR_ADMIN_KEYS)")


class KeySet:
    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def matches(self, presented: str) -> bool:
        digest = hashlib.sha256(presented.encode()).digest()
        ok = False
        for ref in self._digests:  # compare with every key, so timing says nothing about which
            ok |= hmac.compare_digest(digest, ref)
        return ok


class Auth:
    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.auth_enabled
        self.data = KeySet((*settings.api_keys, *settings.admin_keys))
        self.admin = KeySet(settings.admin_keys)

    def check(self, credentials: HTTPAuthorizationCredentials | None, *, admin: bool) -> None:
        if admin and not self.admin:
            raise ServiceError("admin_disabled", "the admin endpoints are disabled: no SIMGR_ADMIN_KEYS configured")
        if not self.enabled:
            return
        if credentials is None:
            raise ServiceError("unauthorized", "missing Authorization: Bearer <key>", headers=_CHALLENGE)
        key = credentials.credentials
        if admin:
            if self.admin.matches(key):
                return
            if self.data.matches(key):
                raise ServiceError("forbidden", "this key is not an admin key")
            raise ServiceError("unauthorized", "invalid API key", headers=_CHALLENGE)
        if not self.data.matches(key):
            raise ServiceError("unauthorized", "invalid API key", headers=_CHALLENGE)


def _auth(request: Request) -> Auth:
    auth: Auth = request.app.state.auth
    return auth


async def require_key(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> None:
    _auth(request).check(credentials, admin=False)


async def require_admin(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> None:
    _auth(request).check(credentials, admin=True)
