"""Subcommands whose packages come from an extra: registered when the extra is installed, else replaced by
a stand-in that fails with one line naming the extra (never a traceback, never "invalid choice")."""

from __future__ import annotations

import argparse
import importlib.util
from typing import Any

from model.errors import SimGRError

SERVE_STACK = ("fastapi", "uvicorn", "pydantic_settings", "redis", "prometheus_client")  # the `serve` extra


def add_serve_command(sub: Any) -> None:
    """``simgr serve``, or its stand-in when a package of the serving stack is missing."""
    missing = next((m for m in SERVE_STACK if importlib.util.find_spec(m) is None), None)
    if missing is None:
        from service.cli import serve as serve_cmd

        s = sub.add_parser("serve", help="serve a bundle over HTTP")
        serve_cmd.add_arguments(s)
        s.set_defaults(func=serve_cmd.run)
        return

    def unavailable(_: argparse.Namespace) -> int:
        raise SimGRError(f"simgr serve needs {missing}, from the serving stack: pip install 'simgr[serve]'")

    # "+" as the only option prefix: every flag given lands in `rest`, so any command line gets the error
    s = sub.add_parser("serve", help="serve a bundle over HTTP (needs the serve extra)", add_help=False,
                       prefix_chars="+")
    s.add_argument("rest", nargs="*")
    s.set_defaults(func=unavailable)
