"""A small app: accounts with a unique email and their notes (SQLAlchemy 2 models)."""

from sqlalchemy import ForeignKey, String, UniqueConstraint, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("email"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200))
    notes: Mapped[list["Note"]] = relationship(back_populates="account")


class Note(Base):
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    body: Mapped[str] = mapped_column(String(2000))
    account: Mapped[Account] = relationship(back_populates="notes")


class Plan(Base):
    """Seeded by the migration: every new schema starts with these rows."""

    __tablename__ = "plans"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)


def register(session: Session, email: str) -> Account:
    account = Account(email=email)
    session.add(account)
    session.commit()  # the code under test commits: transaction rollback could not isolate it
    return account


def plans(session: Session) -> list[str]:
    return list(session.scalars(select(Plan.name).order_by(Plan.id)))
