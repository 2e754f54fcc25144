"""Card PINs never reach a page that does not record their disclosure.

A clerk and an auditor read every page that shows card secrets, of any distributor: the card
list and search, each card's page and history, the orders carrying them (inline), the audit log
and its entries, the disclosure log. None of them holds a PIN. A supervisor without
orders.reveal_cardsecret (or orders.export_cardsecret) cannot reveal (or export) either, and
nothing is recorded. The last test proves the check itself: a supervisor who may reveal does see
the PIN on the page that records it.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from pghistory.models import Events

from config.roles import AUDITOR, FINANCE_CLERK, FINANCE_SUPERVISOR, SUPERVISOR_PERMISSIONS
from orders.models import CardSecret, OrderKind, OrderStatus, PinDisclosure, Product, RechargeOrder, UpstreamProvider
from orders.services import _store_cards, card_secret_reveal, card_secrets_export, order_create
from providers.results import CardSecretData
from tests.factories import fund, make_distributor, make_user, verify_second_factor
from tests.security.conftest import snapshot

pytestmark = pytest.mark.django_db

PINS = {"EXPA": ["731904628815", "502287341196"], "EXPB": ["648210937752", "915503826641"]}
ALL_PINS = [pin for pins in PINS.values() for pin in pins]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture
def cards():
    """Two distributors, each with a delivered gift-card order of two cards with known PINs."""
    creator = make_user("card_creator", FINANCE_CLERK)
    product = Product.objects.create(
        provider=UpstreamProvider.BST17, code="EXP-12", name="话费卡 100", kind=OrderKind.GIFT_CARD,
        face_value=Decimal("100.00"), cost_price=Decimal("97.00"), sale_price=Decimal("98.00"),
    )
    orders = []
    for code, pins in PINS.items():
        distributor = make_distributor(code=code, name=f"卡密分销商 {code}")
        fund(distributor, "1000.00")
        order = order_create(distributor=distributor, product=product, actor=creator, quantity=len(pins))
        RechargeOrder.objects.filter(pk=order.pk).update(status=OrderStatus.SUCCEEDED)
        _store_cards(order, [CardSecretData(card_number=f"{code}-CARD-{i}", pin=pin) for i, pin in enumerate(pins)])
        orders.append(order)
    # One earlier, legitimate reveal, so the disclosure log has a row to show.
    supervisor = make_user("card_supervisor", FINANCE_SUPERVISOR)
    card_secret_reveal(card_secret=CardSecret.objects.order_by("pk").first(), actor=supervisor)
    return {"orders": orders, "cards": list(CardSecret.objects.order_by("pk"))}


def assert_no_pin(response, where: str) -> None:
    assert response.status_code == 200, (where, response.status_code)
    body = response.content.decode()
    leaked = [pin for pin in ALL_PINS if pin in body]
    assert not leaked, f"{where} shows PINs {leaked}"


def reading_pages(cards) -> list[tuple[str, str]]:
    pages = [
        ("card list", reverse("admin:orders_cardsecret_changelist")),
        ("card list, every distributor", reverse("admin:orders_cardsecret_changelist") + "?all="),
        ("card search by number", reverse("admin:orders_cardsecret_changelist") + "?q=EXPB-CARD-1"),
        ("card search by order", reverse("admin:orders_cardsecret_changelist")
         + f"?q={cards['orders'][0].client_reference}"),
        ("order list", reverse("admin:orders_rechargeorder_changelist")),
        ("disclosure log", reverse("admin:orders_pindisclosure_changelist")),
        ("audit log of cards", reverse("admin:pghistory_events_changelist") + "?model=orders.CardSecret"),
        ("audit log, card events",
         reverse("admin:pghistory_events_changelist") + "?event_model=orders.CardSecretEvent"),
        ("audit log, everything", reverse("admin:pghistory_events_changelist") + "?label=insert"),
    ]
    for card in cards["cards"]:
        pages += [
            (f"card {card.card_number}", reverse("admin:orders_cardsecret_change", args=[card.pk])),
            (f"history of {card.card_number}", reverse("admin:orders_cardsecret_history", args=[card.pk])),
            (f"audit log of {card.card_number}",
             reverse("admin:pghistory_events_changelist") + f"?obj=orders.CardSecret:{card.pk}"),
        ]
    for order in cards["orders"]:
        pages += [
            (f"order {order}", reverse("admin:orders_rechargeorder_change", args=[order.pk])),
            (f"history of order {order}", reverse("admin:orders_rechargeorder_history", args=[order.pk])),
        ]
    for disclosure in PinDisclosure.objects.all():
        url = reverse("admin:orders_pindisclosure_change", args=[disclosure.pk])
        pages.append((f"disclosure {disclosure.pk}", url))
    events = Events.objects.filter(pgh_obj_model__in=["orders.CardSecret", "orders.RechargeOrder"])
    assert events.filter(pgh_obj_model="orders.CardSecret").count() == len(ALL_PINS)
    for event in events:
        pages.append((f"audit entry {event.pk}", reverse("admin:pghistory_events_change", args=[quote(event.pk)])))
    return pages


@pytest.mark.parametrize("role", [FINANCE_CLERK, AUDITOR])
def test_no_page_a_clerk_or_auditor_can_open_shows_a_pin(client, cards, role):
    client.force_login(make_user("reader", role))
    before = snapshot()
    disclosures = PinDisclosure.objects.count()

    for where, url in reading_pages(cards):
        assert_no_pin(client.get(url), where)

    # The cards of both distributors were listed (masked), so the absence of PINs means something.
    listing = client.get(reverse("admin:orders_cardsecret_changelist")).content.decode()
    assert all(card.card_number in listing for card in cards["cards"])
    for card in cards["cards"]:  # the audit log does show the card rows (their data, ciphertext and all)
        audit = client.get(reverse("admin:pghistory_events_changelist") + f"?obj=orders.CardSecret:{card.pk}")
        assert card.card_number in audit.content.decode()
    assert PinDisclosure.objects.count() == disclosures
    assert snapshot() == before


def supervisor_without(client, codename: str):
    """A signed-in, second-factor-verified supervisor holding every supervisor permission but one."""
    user = make_user(f"supervisor_without_{codename}")
    permissions = [
        Permission.objects.get(content_type__app_label=app, codename=name)
        for app, name in sorted(SUPERVISOR_PERMISSIONS) if name != codename
    ]
    user.user_permissions.set(permissions)
    assert user.has_perm("orders.view_cardsecret") and not user.has_perm(f"orders.{codename}")
    client.force_login(user)
    verify_second_factor(client, user)
    return user


@pytest.mark.parametrize(("codename", "action"),
                         [("reveal_cardsecret", "reveal"), ("export_cardsecret", "export_xlsx")])
def test_a_supervisor_without_the_permission_cannot_reveal_or_export(client, cards, codename, action):
    user = supervisor_without(client, codename)
    url = reverse("admin:orders_cardsecret_changelist")
    selected = [card.pk for card in cards["cards"]]
    disclosures = PinDisclosure.objects.count()
    before = snapshot()

    listing = client.get(url)
    offered = [name for name, _label in listing.context["action_form"].fields["action"].choices]
    first_click = client.post(url, {"action": action, "_selected_action": selected, "select_across": "0"})
    confirmed = client.post(url, {"action": action, "_selected_action": selected, "select_across": "0",
                                  "confirmed": "yes"})
    across = client.post(url, {"action": action, "_selected_action": selected, "select_across": "1",
                               "confirmed": "yes"})

    assert action not in offered
    for response in (first_click, confirmed, across):
        assert response.status_code in (200, 302)
        assert not response.get("Content-Type", "").startswith(XLSX)
        assert "admin/orders/cardsecret/revealed.html" not in {t.name for t in response.templates}
        body = response.content.decode()
        assert not [pin for pin in ALL_PINS if pin in body]
    with pytest.raises(PermissionDenied):
        if action == "reveal":
            card_secret_reveal(card_secret=cards["cards"][0], actor=user)
        else:
            card_secrets_export(card_secrets=cards["cards"], actor=user)
    assert PinDisclosure.objects.count() == disclosures
    assert snapshot() == before


def test_the_check_would_see_a_pin_a_supervisor_reveals(client, cards):
    """The control: with the permission, the PIN is on the page, and the reveal is recorded."""
    supervisor = make_user("revealer", FINANCE_SUPERVISOR)
    client.force_login(supervisor)
    verify_second_factor(client, supervisor)
    card = cards["cards"][-1]

    response = client.post(reverse("admin:orders_cardsecret_changelist"), {
        "action": "reveal", "_selected_action": [card.pk], "select_across": "0", "confirmed": "yes",
    })

    assert response.status_code == 200 and ALL_PINS[-1] in response.content.decode()
    assert PinDisclosure.objects.filter(user=supervisor, card_secret=card, channel="reveal").count() == 1
