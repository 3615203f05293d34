from django.apps import AppConfig
from django.db.models.signals import post_migrate


class TrifectaSiteConfig(AppConfig):
    name = "trifecta_site"
    verbose_name = "Desk processes"

    def ready(self):
        from .schedule import ensure_default_schedule  # imports models: only once the app registry is ready

        post_migrate.connect(ensure_default_schedule, sender=self)
