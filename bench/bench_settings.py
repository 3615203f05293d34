"""Production settings with the benchmark's baseline view added to the URLs."""
from trifecta_site.settings import *  # noqa: F401,F403

ROOT_URLCONF = "bench_urls"
