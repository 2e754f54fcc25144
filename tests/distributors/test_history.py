"""Audit history is written by the database, for bulk operations too, and cannot be edited."""

from __future__ import annotations

import pghistory
import pytest
from django.db import DatabaseError, connection, transaction
from django.urls import reverse
from pghistory.models import Events

from config.roles import AUDITOR, FINANCE_CLERK
from distributors.models import Distributor, DistributorStatus
from tests.factories import make_distributor, make_user, sign_in

pytestmark = pytest.mark.django_db


def events_of(distributor):
    return Events.objects.tracks(distributor).order_by("pgh_id")


def test_a_queryset_update_is_recorded_for_every_row_with_the_field_diff():
    first, second = make_distributor(), make_distributor()

    Distributor.objects.filter(pk__in=[first.pk, second.pk]).update(status=DistributorStatus.SUSPENDED)

    for distributor in (first, second):
        update = events_of(distributor).filter(pgh_label="update").get()
        assert update.pgh_diff["status"] == ["active", "suspended"]


def test_bulk_create_is_recorded():
    Distributor.objects.bulk_create([Distributor(code="B1", name="批量一"), Distributor(code="B2", name="批量二")])

    assert Events.objects.filter(pgh_obj_model="distributors.Distributor", pgh_label="insert").count() == 2


def test_changes_carry_the_context_they_were_made_in():
    with pghistory.context(source="import", import_id=7):
        distributor = make_distributor()

    [insert] = events_of(distributor).filter(pgh_label="insert")
    assert insert.pgh_context["source"] == "import"
    assert insert.pgh_context["import_id"] == 7


def test_an_admin_action_is_attributed_to_the_user_and_the_action(client):
    clerk = make_user("clerk1", FINANCE_CLERK)
    distributor = make_distributor()
    sign_in(client, clerk)
    response = client.post(
        reverse("admin:distributors_distributor_changelist"),
        {"action": "suspend", "_selected_action": [distributor.pk]},
    )

    assert response.status_code == 302
    update = events_of(distributor).filter(pgh_label="update").get()
    assert update.pgh_context["user"] == clerk.pk
    assert update.pgh_context["source"] == "web"
    assert update.pgh_context["action"] == "suspend"


def test_history_rows_cannot_be_changed_even_with_raw_sql():
    distributor = make_distributor()
    event_table = Distributor.pgh_event_models["insert"]._meta.db_table

    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"UPDATE {event_table} SET name = 'forged' WHERE pgh_obj_id = %s", [distributor.pk])
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {event_table} WHERE pgh_obj_id = %s", [distributor.pk])

    assert events_of(distributor).get().pgh_data["name"] == distributor.name


def test_the_audit_log_is_filterable_and_read_only_for_an_auditor(client):
    clerk = make_user("clerk2", FINANCE_CLERK)
    auditor = make_user("auditor1", AUDITOR)
    distributor = make_distributor()
    sign_in(client, clerk)
    client.post(reverse("admin:distributors_distributor_changelist"),
                {"action": "suspend", "_selected_action": [distributor.pk]})
    sign_in(client, auditor)
    url = reverse("admin:pghistory_events_changelist")

    by_user = client.get(url, {"user": clerk.pk})
    by_action = client.get(url, {"admin_action": "suspend", "event_model": "distributors.distributorevent"})
    history_of_object = client.get(url, {"method": "tracks", "obj": f"distributors.distributor:{distributor.pk}"})

    assert by_user.status_code == by_action.status_code == history_of_object.status_code == 200
    assert by_user.context["cl"].result_count == 1
    assert by_action.context["cl"].result_count == 1
    assert history_of_object.context["cl"].result_count == 2  # insert, then the suspension
    assert not by_user.context["cl"].model_admin.has_change_permission(by_user.wsgi_request)


def test_every_change_page_links_to_the_history_of_its_object(client):
    auditor = make_user("auditor2", AUDITOR)
    distributor = make_distributor()
    sign_in(client, auditor)
    page = client.get(reverse("admin:distributors_distributor_change", args=[distributor.pk])).content.decode()

    assert f"method=tracks&obj=distributors.Distributor:{distributor.pk}" in page
