"""Card PINs: encrypted at rest under their own key, masked, revealed or exported only with permission."""

from __future__ import annotations

import io

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from orders.models import CardSecret, PinDisclosure
from orders.pins import PinUnreadable, decrypt_pin, encrypt_pin
from orders.services import _store_cards, card_secret_reveal, card_secrets_export, order_create
from providers.results import CardSecretData
from tests.factories import sign_in

pytestmark = pytest.mark.django_db

PINS = ["834201957731", "772910045126"]


@pytest.fixture
def cards(clerk, distributor, gift_card_product):
    order = order_create(distributor=distributor, product=gift_card_product, actor=clerk, quantity=2)
    _store_cards(order, [CardSecretData(card_number=f"CARD{i}", pin=pin) for i, pin in enumerate(PINS)])
    return list(CardSecret.objects.filter(order=order).order_by("card_number"))


def test_a_raw_select_never_shows_a_pin(cards):
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM orders_cardsecret")
        table = repr(cursor.fetchall())
        cursor.execute("SELECT * FROM orders_cardsecretevent")
        history = repr(cursor.fetchall())
    for pin in PINS:
        assert pin not in table and pin not in history
    assert [decrypt_pin(card.pin_ciphertext) for card in cards] == PINS


def test_a_wrong_key_is_an_error_never_garbage(settings, cards):
    settings.CARD_PIN_KEYS = [Fernet.generate_key().decode()]

    with pytest.raises(PinUnreadable):
        decrypt_pin(cards[0].pin_ciphertext)


def test_the_pin_key_must_exist_and_must_not_be_the_secret_key(settings):
    settings.CARD_PIN_KEYS = []
    with pytest.raises(ImproperlyConfigured):
        encrypt_pin("1")
    settings.CARD_PIN_KEYS = [settings.SECRET_KEY]
    with pytest.raises(ImproperlyConfigured):
        encrypt_pin("1")


def test_rotation_re_encrypts_under_the_newest_key_and_old_keys_can_then_go(settings, cards):
    old_key = settings.CARD_PIN_KEYS[0]
    new_key = Fernet.generate_key().decode()
    settings.CARD_PIN_KEYS = [new_key, old_key]

    call_command("rotate_card_pins", stdout=io.StringIO())

    settings.CARD_PIN_KEYS = [new_key]
    refreshed = CardSecret.objects.order_by("card_number")
    assert [decrypt_pin(card.pin_ciphertext) for card in refreshed] == PINS


def test_revealing_needs_the_permission_and_every_reveal_is_recorded(clerk, supervisor, cards):
    with pytest.raises(PermissionDenied):
        card_secret_reveal(card_secret=cards[0], actor=clerk)
    assert not PinDisclosure.objects.exists()

    assert card_secret_reveal(card_secret=cards[0], actor=supervisor) == PINS[0]

    [disclosure] = PinDisclosure.objects.all()
    assert disclosure.user == supervisor and disclosure.channel == "reveal"


def test_an_export_needs_the_permission_and_records_each_pin(clerk, supervisor, cards):
    with pytest.raises(PermissionDenied):
        card_secrets_export(card_secrets=cards, actor=clerk)

    rows = card_secrets_export(card_secrets=cards, actor=supervisor)

    assert [pin for _card, pin in rows] == PINS
    assert PinDisclosure.objects.filter(user=supervisor, channel="export").count() == 2


def test_the_admin_masks_pins_and_a_clerk_cannot_reveal(client, clerk, cards):
    sign_in(client, clerk)
    url = reverse("admin:orders_cardsecret_changelist")

    listing = client.get(url).content.decode()
    reveal = client.post(url, {"action": "reveal", "_selected_action": [c.pk for c in cards], "confirmed": "yes"})

    for pin in PINS:
        assert pin not in listing and pin not in reveal.content.decode()
    assert not PinDisclosure.objects.exists()


def test_the_disclosure_log_cannot_be_rewritten(supervisor, cards):
    from django.db import DatabaseError, transaction

    card_secret_reveal(card_secret=cards[0], actor=supervisor)
    with pytest.raises(DatabaseError), transaction.atomic():
        PinDisclosure.objects.all().delete()
    assert PinDisclosure.objects.count() == 1
