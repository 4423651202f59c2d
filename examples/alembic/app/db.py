"""The app's engine, created at import from the settings (as FastAPI projects do)."""

from sqlalchemy import create_engine

from . import settings

engine = create_engine(settings.DATABASE_URL, pool_pre_ping=True)
