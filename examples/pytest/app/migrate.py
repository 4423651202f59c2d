"""The app's migration: create the tables and seed rows in the database at `url`."""

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from .models import Base, Plan

VERSION = "example-app-v1"  # bump when the models change: a new template is built


def sqlalchemy_url(url: str) -> str:
    return url.replace("postgres://", "postgresql+psycopg://", 1)


def migrate(url: str) -> None:
    engine = create_engine(sqlalchemy_url(url))
    try:
        Base.metadata.create_all(engine)
        with Session(engine) as session:
            session.add_all([Plan(name="free"), Plan(name="pro")])
            session.commit()
    finally:
        engine.dispose()
