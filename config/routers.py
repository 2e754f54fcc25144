"""Route call-log writes to their own connection so they commit independently."""

CALL_LOG_ALIAS = "call_log"


class CallLogRouter:
    def db_for_write(self, model, **hints):
        if model._meta.label == "providers.ProviderCall":
            return CALL_LOG_ALIAS
        return None

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        # The call-log alias is a second connection to the same database: migrate only once.
        return db != CALL_LOG_ALIAS

    def allow_relation(self, obj1, obj2, **hints):
        return True
