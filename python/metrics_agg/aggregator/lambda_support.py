"""What `lambda/function/handler.py` needs at import: logging for the Lambda runtime and the config.

Kept out of the handler so the handler stays a thin, logic-free shell.
Runs once per cold start; nothing here is on the per-invocation path.
"""

from __future__ import annotations

__all__ = [
    "API_KEY_SECRET_ENV",
    "configure_logging",
    "load_config",
    "prepare",
    "read_api_key_secret",
]

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from metrics_agg import logs
from metrics_agg.config import Config
from metrics_agg.errors import ConfigError

_log = logging.getLogger("metrics_agg.aggregator.lambda_support")

# The SAM template sets this when the API key lives in Secrets Manager (docs/deployment.md).
API_KEY_SECRET_ENV = "PLEXUS_API_KEY_SECRET_ARN"


def configure_logging(environ: Mapping[str, str] | None = None) -> None:
    """Let the package's INFO summary lines through, as JSON lines in Lambda (`logs`).

    Level: ``AWS_LAMBDA_LOG_LEVEL`` (the template's ApplicationLogLevel), else ``LOG_LEVEL``,
    default INFO. The Lambda runtime already puts a handler on the root logger (which stays
    at WARNING, so botocore/urllib3 chatter stays out); only the ``metrics_agg`` logger is
    lowered. Outside Lambda (smoke test, local runs) a stderr handler is added.
    """
    logs.configure(os.environ if environ is None else environ)


def read_api_key_secret(secret_id: str, *, region: str | None = None) -> str:
    """Fetch the AppSync API key from Secrets Manager (plain string or JSON ``{"apiKey": ...}``).

    botocore is imported here, not at module level: with the key in the environment or IAM
    auth, a cold start should not pay for it.

    Raises:
        ConfigError: the secret cannot be read or holds no usable key (message names the
            secret id, never its value).
    """
    import botocore.session
    from botocore.exceptions import BotoCoreError, ClientError

    session = botocore.session.get_session()
    client: Any = session.create_client("secretsmanager", region_name=region)
    try:
        secret = client.get_secret_value(SecretId=secret_id).get("SecretString") or ""
    except (BotoCoreError, ClientError) as exc:
        raise ConfigError(
            f"cannot read the API key secret {secret_id}: {type(exc).__name__}"
        ) from exc
    key = secret.strip()
    if key.startswith("{"):
        try:
            parsed = json.loads(key)
        except ValueError:
            parsed = None
        value = parsed.get("apiKey") if isinstance(parsed, dict) else None
        key = value.strip() if isinstance(value, str) else ""
    if not key:
        raise ConfigError(
            f"the secret {secret_id} holds no API key: store the key as a plain string "
            'or as JSON {"apiKey": "<key>"}'
        )
    return key


def load_config(environ: Mapping[str, str] | None = None) -> Config:
    """``Config.from_env`` plus the API key from ``PLEXUS_API_KEY_SECRET_ARN`` when set.

    A key given directly (``PLEXUS_API_KEY``/``GRAPHQL_API_KEY``) wins over the secret; with
    neither, the client signs requests with IAM (docs/design.md §2 Auth).

    Raises:
        ConfigError: no endpoint, a bad numeric knob, or an unreadable secret.
    """
    env = os.environ if environ is None else environ
    config = Config.from_env(env)
    secret_id = env.get(API_KEY_SECRET_ENV, "").strip()
    if config.api_key or not secret_id:
        return config
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
    return config.with_(api_key=read_api_key_secret(secret_id, region=region))


def prepare(config: Config) -> None:
    """Make at init what the first invocation would otherwise pay for: the recheck queue's
    and the activity table's botocore clients (about 0.35 s of CPU together).

    Lambda's init phase, outside the handler, as AWS advises for SDK clients; the local
    stack's sandboxes call it when they start. Best effort, and never fatal to the init: a
    client that cannot be made now (no region, a malformed endpoint, no botocore) is left
    to the invocation that needs it, which reports the failure as before.
    """
    if config.recheck_queue_url:
        url, delay = config.recheck_queue_url, config.recheck_delay_seconds
        try:
            from metrics_agg.aggregator.recheck import sqs_sink

            sqs_sink(url, delay).connect()
        except Exception as exc:  # reported by the invocation that needs the client
            _log.info("init: the recheck queue's client is left to the first invocation: %s", exc)
    if config.activity_table:
        try:
            from metrics_agg.aggregator.activity import DynamoActivityTable, activity_for

            activity = activity_for(config)
            if activity is not None and isinstance(activity.store, DynamoActivityTable):
                activity.store.connect()
        except Exception as exc:  # reported by the invocation that needs the client
            _log.info("init: the activity table's client is left to the first invocation: %s", exc)
