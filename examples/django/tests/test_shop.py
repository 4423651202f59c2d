import pytest
from django.db import connection

from shop.models import Customer, Order


@pytest.mark.parametrize("n", range(10))
@pytest.mark.django_db
def test_each_test_registers_the_same_customer(n, django_db_setup):
    c = Customer.objects.create(email="alice@example.com", name=f"Alice {n}")
    Order.objects.create(customer=c, total_cents=100 * n)
    assert Customer.objects.count() == 1
    with connection.cursor() as cur:
        cur.execute("select current_schema()")
        assert cur.fetchone()[0] == django_db_setup.name


@pytest.mark.django_db
def test_the_template_holds_djangos_own_tables():
    with connection.cursor() as cur:
        cur.execute("select count(*) from django_migrations where app = 'shop'")
        assert cur.fetchone()[0] == 1
        cur.execute("select count(*) from pg_tables where schemaname = current_schema() and tablename like 'auth_%'")
        assert cur.fetchone()[0] >= 3
