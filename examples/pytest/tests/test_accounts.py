import pytest
from sqlalchemy.exc import IntegrityError

from app.models import Account, Note, plans, register


@pytest.mark.parametrize("run", range(5))
def test_register_alice(session, run):
    account = register(session, "alice@example.com")
    assert account.id == 1  # every test starts from the template: sequences included


def test_duplicate_email_is_refused(session):
    register(session, "alice@example.com")
    with pytest.raises(IntegrityError):
        register(session, "alice@example.com")


def test_notes_belong_to_their_account(session):
    account = register(session, "alice@example.com")
    session.add(Note(account=account, body="hello"))
    session.commit()
    assert [n.body for n in session.get(Account, account.id).notes] == ["hello"]


def test_seed_rows_come_with_the_template(session):
    assert plans(session) == ["free", "pro"]
