from django.db import models


class FeedState(models.Model):
    """Status of one venue of one feed, as the scan worker last saw it.

    Written by the `poll_feeds` task; read by the health endpoint and the API, so the
    desk exposes which venues are ok, degraded or down and why.
    """

    feed = models.CharField(max_length=16)
    venue = models.CharField(max_length=64)
    state = models.CharField(max_length=16)
    detail = models.CharField(max_length=500, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    error_at = models.DateTimeField(null=True, blank=True)
    last_ok_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["feed", "venue"], name="one_state_per_feed_venue")]
        ordering = ["feed", "venue"]

    def __str__(self):
        return f"{self.feed}:{self.venue} {self.state}"
