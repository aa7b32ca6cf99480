"""Typed keys for everything the app shares between handlers."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from app.command_cache import CommandCache
from app.db.migrations import Migration
from app.db.pool import DatabaseLayout
from app.drain import Drain
from app.ingest import BatchWriter
from app.login_limit import LoginRateLimit
from app.metrics.service import ServiceMetrics
from app.settings import Settings
from app.tokens import TokenVerifier

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", ServiceMetrics)
POOL = web.AppKey("pool", asyncpg.Pool)
LAYOUT = web.AppKey("layout", DatabaseLayout)
MIGRATIONS = web.AppKey("migrations", list[Migration])
INGEST = web.AppKey("ingest", BatchWriter)
COMMANDS = web.AppKey("commands", CommandCache)
TOKENS = web.AppKey("tokens", TokenVerifier)
DRAIN = web.AppKey("drain", Drain)
LOGIN_LIMIT = web.AppKey("login_limit", LoginRateLimit)
