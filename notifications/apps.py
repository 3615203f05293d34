from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self):
        """Listen to the desk's own model saves (one way: the desk never imports this app)."""
        from . import receivers  # noqa: F401  (connects the receivers; the app registry must be ready first)
