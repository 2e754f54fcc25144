import pytest
from django.db import transaction

from providers.models import ProviderCall

pytestmark = pytest.mark.django_db(databases=["default", "call_log"])


def test_a_call_row_survives_the_rollback_of_the_business_transaction():
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            ProviderCall.objects.create(provider="wdt", operation="probe", url="http://127.0.0.1/")
            raise RuntimeError("business failure after the call")

    assert ProviderCall.objects.filter(operation="probe").count() == 1


def test_call_rows_do_not_leak_between_tests():
    assert ProviderCall.objects.count() == 0


def test_calls_written_together_are_each_a_row_with_its_own_id():
    calls = [ProviderCall(provider="exchange", operation="info", url="http://127.0.0.1/", client_reference=f"R{n}")
             for n in range(3)]

    ProviderCall.insert_all(calls)

    assert all(call.pk for call in calls)
    assert dict(ProviderCall.objects.values_list("pk", "client_reference")) == {
        call.pk: call.client_reference for call in calls}
