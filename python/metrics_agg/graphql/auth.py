"""Request authentication for AppSync: API key or IAM SigV4 (docs/design.md §2 Auth).

botocore is imported only when IAM auth is actually used, so an API-key deployment (and
the handler's cold start) never pays for it.
"""

from __future__ import annotations

__all__ = ["ApiKeyAuth", "Auth", "SigV4Auth", "auth_for"]

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from metrics_agg.config import Config
from metrics_agg.errors import ConfigError

SERVICE = "appsync"


class _DropSigningDebug(logging.Filter):
    """botocore.auth logs the canonical request at DEBUG, and that includes the
    X-Amz-Security-Token value: drop those records so no secret reaches a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


_SIGNING_FILTER = _DropSigningDebug()


def _quiet_botocore_signing() -> None:
    boto_logger = logging.getLogger("botocore.auth")
    if _SIGNING_FILTER not in boto_logger.filters:
        boto_logger.addFilter(_SIGNING_FILTER)


class Auth(Protocol):
    """Adds credentials to one request; returns the headers to send (a new dict)."""

    def headers(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str]
    ) -> dict[str, str]: ...


class ApiKeyAuth:
    """AppSync API-key auth: one ``x-api-key`` header. The key never appears in ``repr``."""

    __slots__ = ("_key",)

    def __init__(self, api_key: str) -> None:
        self._key = api_key

    def __repr__(self) -> str:
        return "ApiKeyAuth(api_key=<hidden>)"

    def headers(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str]
    ) -> dict[str, str]:
        out = dict(headers)
        out["x-api-key"] = self._key
        return out


class SigV4Auth:
    """IAM auth: SigV4 with botocore's own signer, service ``appsync``.

    ``credentials`` defaults to botocore's default chain (environment, shared config,
    container/instance roles); refreshable credentials are frozen per request so a
    rotating session token is picked up. The region comes from ``Config.signing_region``.
    """

    __slots__ = ("_credentials", "_region")

    def __init__(self, region: str, credentials: Any | None = None) -> None:
        _quiet_botocore_signing()
        if credentials is None:
            import botocore.session

            credentials = botocore.session.get_session().get_credentials()
            if credentials is None:
                raise ConfigError(
                    "IAM auth needs AWS credentials (none found in the default chain): set "
                    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile/role, "
                    "or set PLEXUS_API_KEY for API-key auth"
                )
        self._credentials = credentials
        self._region = region

    def __repr__(self) -> str:
        return f"SigV4Auth(service={SERVICE!r}, region={self._region!r})"

    @property
    def region(self) -> str:
        return self._region

    def headers(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str]
    ) -> dict[str, str]:
        from botocore.auth import SigV4Auth as _BotoSigV4
        from botocore.awsrequest import AWSRequest

        creds = self._credentials
        frozen = (
            creds.get_frozen_credentials() if hasattr(creds, "get_frozen_credentials") else creds
        )
        request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
        _BotoSigV4(frozen, SERVICE, self._region).add_auth(request)
        return {str(k): str(v) for k, v in request.headers.items()}


def auth_for(config: Config) -> Auth:
    """The auth the config asks for: API key when set, else IAM.

    Raises:
        ConfigError: IAM auth without a resolvable region or without credentials.
    """
    if config.api_key:
        return ApiKeyAuth(config.api_key)
    return SigV4Auth(config.signing_region)
