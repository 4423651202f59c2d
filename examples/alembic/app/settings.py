"""The app's settings, as a FastAPI project keeps them: read once, from the environment."""

import os

DATABASE_URL = os.environ.get("APP_DATABASE_URL", "postgresql+psycopg://app:app@localhost:5432/app")
FIRST_SUPERUSER = "admin@example.com"
