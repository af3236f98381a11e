"""``simgr serve``: every ``Settings`` field has a flag twin (``max_batch_size`` -> ``--max-batch-size``).

Flags override ``SIMGR_*`` env vars, which override defaults. ``service/cli/main.py`` registers it:

    add_arguments(subparser); ...; return run(args)
"""

from __future__ import annotations

import argparse
import logging
import os
import types
import typing
from typing import Any, Literal

from pydantic import ValidationError

from model.errors import SimGRError
from service.settings import Settings


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _literal_choices(annotation: Any) -> list[str] | None:
    if typing.get_origin(annotation) is Literal:
        return [str(a) for a in typing.get_args(annotation)]
    return None


def _is_bool(annotation: Any) -> bool:
    if annotation is bool:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return bool in typing.get_args(annotation)
    return False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per Settings field; unset flags leave the env/default value alone."""
    for name, field in Settings.model_fields.items():
        env = f"SIMGR_{name.upper()}"
        default = "unset" if field.default in (None, ()) else field.default
        help_text = f"{field.description} [env {env}; default {default}]"
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": help_text}
        if _is_bool(field.annotation):
            parser.add_argument(flag(name), action=argparse.BooleanOptionalAction, **kwargs)
            continue
        choices = _literal_choices(field.annotation)
        if choices:
            kwargs["choices"] = choices
        else:
            kwargs["metavar"] = name.upper()
        parser.add_argument(flag(name), **kwargs)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from env vars overridden by the flags given on the command line."""
    overrides = {name: getattr(args, name) for name in Settings.model_fields if hasattr(args, name)}
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise SimGRError(f"{flag(where) if where in Settings.model_fields else where}: {first['msg']}") from None


def _check_sources(settings: Settings) -> None:
    """Fail fast, before loading anything, on a missing bundle or publish root."""
    if settings.root is not None:
        if not os.path.lexists(settings.root / "CURRENT"):
            raise SimGRError(f"{settings.root}: no CURRENT pointer; publish a bundle first: "
                             f"simgr publish BUNDLE --root {settings.root}")
    elif settings.artifacts is None:
        raise SimGRError("--artifacts or --root (SIMGR_ARTIFACTS / SIMGR_ROOT) is required: "
                         "an export bundle directory or a publish root")
    for bundle in (settings.artifacts if settings.root is None else None, settings.canary_artifacts):
        if bundle is not None and not (bundle / "manifest.json").is_file():
            raise SimGRError(f"{bundle}: not an export bundle (no manifest.json)")


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT (graceful: in-flight requests finish). 0 on a clean stop."""
    import uvicorn

    from service.app import create_app

    settings = settings_from_args(args)
    _check_sources(settings)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # our root handler; uvicorn never logs headers, so keys stay out of logs
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
        lifespan="on",
    )
    server = uvicorn.Server(config)
    try:
        server.run()
    except SystemExit:  # uvicorn exits this way when the lifespan startup fails
        if app.state.startup_error:
            raise SimGRError(f"cannot serve: {app.state.startup_error}") from None
        raise
    return 0 if server.started else 1
