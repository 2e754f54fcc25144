"""Route the call log to its own connection, so it commits independently of the business transaction."""

CALL_LOG_ALIAS = "call_log"
PROGRESS_ALIAS = "progress"  # file jobs' progress counters (config.file_jobs), written beside their transaction

# What an upstream sent or was sent, kept whatever becomes of the business transaction around it;
# none of it carries a history context. (A callback's nonce is not among them: it is taken in the
# same transaction as the callback's changes, see orders.services.exchange_callback_apply.)
CALL_LOG_MODELS = {"providers.ProviderCall"}


class CallLogRouter:
    """Reads go through the same connection as writes, so a call is visible as soon as it is logged."""

    def db_for_write(self, model, **hints):
        if model._meta.label in CALL_LOG_MODELS:
            return CALL_LOG_ALIAS
        return None

    db_for_read = db_for_write

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        # The call-log and progress aliases are more connections to the same database: migrate only once.
        return db not in (CALL_LOG_ALIAS, PROGRESS_ALIAS)

    def allow_relation(self, obj1, obj2, **hints):
        return True
