"""A `next` sent with a form is followed only if it stays on this site; otherwise the page's own list.

A link or a form on another site could otherwise send a clerk, straight after a real action of
ours (a product sync), to a look-alike sign-in page.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from config.roles import FINANCE_SUPERVISOR
from tests.factories import make_user, sign_in, verify_second_factor

pytestmark = pytest.mark.django_db

PRODUCTS = "/admin/orders/product/"


@pytest.fixture
def supervisor(client):
    user = make_user("syncing_supervisor", FINANCE_SUPERVISOR)
    sign_in(client, user)
    verify_second_factor(client, user)
    return user


@pytest.mark.parametrize("next_url", [
    "https://evil.example/admin/",
    "//evil.example/admin/",
    "http://evil.example",
    "/\\evil.example/",
    "https:///evil.example/",
    "javascript:alert(1)",
    "",
])
def test_the_product_sync_does_not_redirect_off_site(sandbox, client, supervisor, next_url):
    response = client.post(reverse("admin:orders_product_sync"), {"next": next_url})

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:orders_product_changelist") == PRODUCTS


@pytest.mark.parametrize("next_url", ["/admin/", "/admin/orders/product/?active__exact=1",
                                      "http://testserver/admin/"])
def test_the_product_sync_returns_to_a_page_of_this_site(sandbox, client, supervisor, next_url):
    response = client.post(reverse("admin:orders_product_sync"), {"next": next_url})

    assert response.status_code == 302 and response["Location"] == next_url


def test_over_https_a_plain_http_next_is_not_followed(sandbox, client, supervisor):
    response = client.post(reverse("admin:orders_product_sync"), {"next": "http://testserver/admin/"}, secure=True)

    assert response["Location"] == PRODUCTS
