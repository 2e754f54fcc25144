"""The call log: one row per upstream call, kept even when the business transaction rolls back."""

from __future__ import annotations

import functools

from django.db import connections, models, router, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from providers.results import Outcome


class Provider(models.TextChoices):
    """The upstreams: the one list, for the call log, the products and orders, and the ERP syncs."""

    BEST_GERP = "best_gerp", _("BEST GERP")
    WDT = "wdt", _("Wangdiantong")
    EXCHANGE = "exchange", _("Redemption platform")
    BST17 = "bst17", _("17bst")

    @classmethod
    def choices_of(cls, members: tuple[Provider, ...]) -> list[tuple[str, str]]:
        """The choices of a field that may hold only some of them."""
        return [(member.value, member.label) for member in members]


# Orders are fulfilled by these two; fund transactions are pushed to those two ERPs.
ORDER_PROVIDERS = (Provider.EXCHANGE, Provider.BST17)
ERP_PROVIDERS = (Provider.BEST_GERP, Provider.WDT)


class CallDirection(models.TextChoices):
    OUTBOUND = "outbound", _("Request to upstream")
    CALLBACK = "callback", _("Callback from upstream")


class ProviderCall(models.Model):
    """A request to (or callback from) an upstream, with its redacted request and raw answer.

    Written through the `call_log` database connection (see config.routers), so the row
    survives a rollback of the business transaction that made the call. Business records are
    referenced by label and id, not by foreign key, for the same reason.
    """

    provider = models.CharField(_("provider"), max_length=16, choices=Provider.choices)
    merchant_account = models.CharField(_("merchant account"), max_length=32, default="default")
    operation = models.CharField(_("operation"), max_length=64)
    direction = models.CharField(
        _("direction"), max_length=16, choices=CallDirection.choices, default=CallDirection.OUTBOUND
    )
    record_type = models.CharField(_("business record type"), max_length=64, blank=True)
    record_id = models.CharField(_("business record id"), max_length=64, blank=True)
    client_reference = models.CharField(_("client reference"), max_length=64, blank=True, db_index=True)
    method = models.CharField(_("HTTP method"), max_length=8, default="POST")
    url = models.URLField(_("URL"), max_length=500)
    request_headers = models.JSONField(_("request headers (redacted)"), default=dict, blank=True)
    request_body = models.TextField(_("request (redacted)"), blank=True)
    response_status = models.PositiveSmallIntegerField(_("HTTP status"), null=True, blank=True)
    response_body = models.TextField(_("raw response"), blank=True)
    latency_ms = models.PositiveIntegerField(_("latency (ms)"), null=True, blank=True)
    outcome = models.CharField(_("outcome"), max_length=16, choices=Outcome.choices, blank=True)
    upstream_code = models.CharField(_("upstream code"), max_length=64, blank=True)
    error = models.TextField(_("error"), blank=True)
    signature_valid = models.BooleanField(_("signature valid"), null=True, blank=True)
    # When the request left (or the callback arrived); the row itself is written when it is over.
    created_at = models.DateTimeField(_("created at"), default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("provider call")
        verbose_name_plural = _("provider calls")
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["record_type", "record_id"]),
            models.Index(fields=["provider", "operation", "-id"]),
            models.Index(fields=["outcome", "-id"]),
            # Behind the admin list's filters and searches (providers.admin.ProviderCallAdmin).
            models.Index(fields=["provider", "-id"]),
            models.Index(fields=["direction", "-id"]),
            models.Index(fields=["record_id"]),
            models.Index(fields=["upstream_code", "-id"]),
        ]

    def __str__(self) -> str:
        return f"{self.get_provider_display()} {self.operation} #{self.pk}"

    def insert(self) -> None:
        """Write this new row: one INSERT, always the same text, on the call log's connection.

        Model.save() builds and compiles its INSERT anew for every row, a large share of what
        logging a call costs, and a call is logged twice per order (the request and its callback).
        The unchanging text is prepared once per connection (see DATABASES["call_log"]).
        """
        connection = connections[router.db_for_write(ProviderCall)]
        columns = [column for column in self._meta.concrete_fields if not column.primary_key]
        with connection.cursor() as cursor:
            cursor.execute(
                _insert_statement(connection.alias),
                [column.get_db_prep_save(column.pre_save(self, True), connection) for column in columns],
            )
            self.pk = cursor.fetchone()[0]
        self._state.adding = False
        self._state.db = connection.alias

    @classmethod
    def insert_all(cls, calls: list[ProviderCall]) -> None:
        """Write these new rows with one commit: insert's statement for each, sent together in one transaction.

        A commit waits for the disk, and under load that wait, not the INSERT, is most of what
        logging a call costs: a query job writes the calls answered meanwhile together.
        """
        if len(calls) == 1:
            calls[0].insert()
            return
        if not calls:
            return
        alias = router.db_for_write(cls)
        connection = connections[alias]
        columns = [column for column in cls._meta.concrete_fields if not column.primary_key]
        rows = [[column.get_db_prep_save(column.pre_save(call, True), connection) for column in columns]
                for call in calls]
        with transaction.atomic(using=alias), connection.cursor() as cursor, connection.wrap_database_errors:
            raw = cursor.cursor  # psycopg's own: executemany(returning=True) gives each row's id
            raw.executemany(_insert_statement(alias), rows, returning=True)
            for call in calls:
                call.pk = raw.fetchone()[0]
                call._state.adding = False
                call._state.db = alias
                raw.nextset()


@functools.cache
def _insert_statement(alias: str) -> str:
    """ProviderCall.insert's SQL: the same text for every row, so it is written once per connection alias."""
    meta, quote = ProviderCall._meta, connections[alias].ops.quote_name
    columns = [quote(column.column) for column in meta.concrete_fields if not column.primary_key]
    return (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(columns)}) "  # noqa: S608 - names from the model
        f"VALUES ({', '.join(['%s'] * len(columns))}) RETURNING {quote(meta.pk.column)}"
    )
