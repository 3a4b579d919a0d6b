"""Typed keys for state the route families share through the Application."""

from __future__ import annotations

import weakref

from aiohttp import web

from .config import LabConfig

CONFIG = web.AppKey("config", LabConfig)
WEBSOCKETS = web.AppKey("websockets", weakref.WeakSet)
"""Every open server-side WebSocket, so shutdown can close each one with 1001."""
