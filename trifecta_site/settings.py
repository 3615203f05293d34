"""Settings for every process of the desk, read from environment variables.

The same code runs embedded (SQLite file under var/, a bundled Redis started by
`manage.py run`) and in production (PostgreSQL and Redis given by DATABASE_URL and
REDIS_URL); only these variables differ. README lists each one with its default.
"""
import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONCE, NONE, SELF

from trifecta_site.embedded import owner_only_directory, owner_only_file

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("TRIFECTA_VAR_DIR", BASE_DIR / "var"))
# 0700, and every file in it 0600 even if it was left looser: it holds tokens and session keys.
owner_only_directory(VAR_DIR)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def load_secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept in var/."""
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    path = VAR_DIR / "secret_key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secrets.token_urlsafe(50))
    return path.read_text(encoding="utf-8").strip()


SECRET_KEY = load_secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's assets served by the desk itself: no CDN
    "django_celery_beat",
    "channels",
    "axes",  # failed sign-ins (admin passwords, API tokens) counted per address, in the database
    "trifecta_site",
    "scanners",
    "decisions",
    "execution",
    "notifications",
    "sweeps",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "trifecta_site.admin_limits.AdminQueryLimits",
    "axes.middleware.AxesMiddleware",  # last: it answers a locked-out admin login
]

# Sign-in brute force (docs/SECURITY.md): after LOGIN_FAILURE_LIMIT failed admin logins or
# API/WebSocket tokens from one address, that address is refused for LOGIN_LOCKOUT_MINUTES
# (the correct password too). Counted in the database, so every web process agrees; an
# admin unlocks an address by deleting its row in Admin > Axes > Access attempts.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", "10"))
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("LOGIN_LOCKOUT_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = ["ip_address"]  # by username too would let anyone lock the operators out
AXES_CLIENT_IP_CALLABLE = "trifecta_site.throttling.client_address"  # the address as NUM_PROXIES says
AXES_SENSITIVE_PARAMETERS = ["password", "token"]
AXES_COOLOFF_MESSAGE = (
    f"Too many failed sign-ins from this address: refused for {int(AXES_COOLOFF_TIME.total_seconds() // 60)} minutes. "
    "An administrator can unlock it at once in Admin > Axes > Access attempts.")
AXES_VERBOSE = False

# Content-Security-Policy on every page (dashboard, admin, API docs): scripts, styles and
# connections from the desk itself only, so an injected tag or attribute runs nothing.
# The dashboard has no inline script or style; Swagger UI's one inline <style> carries
# the request's nonce (templates/drf_spectacular/swagger_ui.html).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],  # includes ws(s):// to the same host and port
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

ROOT_URLCONF = "trifecta_site.urls"
ASGI_APPLICATION = "trifecta_site.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: SQLite under var/ unless DATABASE_URL says otherwise.
DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'trifecta.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=int(os.environ.get("CONN_MAX_AGE", "60")))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool("DATABASE_POOL", False):
    # Under ASGI each request runs in its own thread, so persistent connections are not
    # reused: the web process (asgi.py turns this on) keeps a pool instead (Django's
    # psycopg pool; CONN_MAX_AGE must be 0 then). Workers keep one persistent connection.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1, "max_size": int(os.environ.get("DATABASE_POOL_SIZE", "10")), "timeout": 10}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Parameters bound on the server (Django's `server_side_binding`), so psycopg prepares a
    # statement once it ran `prepare_threshold` times on a connection and the server stops
    # parsing and planning it. Empty DATABASE_PREPARE_THRESHOLD: never prepare (a pooler in
    # transaction mode that cannot keep prepared statements, e.g. PgBouncer before 1.21).
    _prepare = os.environ.get("DATABASE_PREPARE_THRESHOLD", "5")
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        server_side_binding=env_bool("DATABASE_SERVER_SIDE_BINDING", True),
        prepare_threshold=int(_prepare) if _prepare else None)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes write at once (web, worker, beat): WAL lets readers go on while
    # one writes, IMMEDIATE takes the write lock at BEGIN so a transaction never fails
    # half-way on lock upgrade, and the timeout makes writers wait instead of failing.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;",
    }
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "trifecta_site" / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
LOGIN_URL = "/admin/login/"

# Production hardening, on whenever DEBUG is off and TLS is terminated in front of us.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
CSRF_COOKIE_HTTPONLY = True  # pages carry the token (the dashboard's <meta name="csrf-token">); scripts never read the cookie
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# REST API: nothing is open unless a view says so (DRF's own default is AllowAny).
# A list's `count` is computed at most this often per query and web process (the rows are always fresh).
LIST_COUNT_MAX_AGE_S = float(os.environ.get("LIST_COUNT_MAX_AGE_S", "2"))
REST_FRAMEWORK = {
    # Token first: a script without credentials, or with a wrong token, gets 401 and
    # `WWW-Authenticate: Token` (with session first it got 403); sessions still need CSRF.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "trifecta_site.lockout.LockoutTokenAuthentication",  # DRF's, with the sign-in lockout
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": [
        "trifecta_site.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "trifecta_site.pagination.ListPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_CLASSES": [
        "trifecta_site.throttling.AnonRateThrottle",
        "trifecta_site.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": os.environ.get("API_ANON_RATE", "120/min"),
        "user": os.environ.get("API_USER_RATE", "6000/min"),
    },
    "COERCE_DECIMAL_TO_STRING": True,
    # Proxies in front of the desk that append to X-Forwarded-For (docs/SECURITY.md): a
    # client's address for throttles and the sign-in lockout is the one the outermost of
    # them saw. 0: the socket's address; the header a client sends is never believed.
    "NUM_PROXIES": int(os.environ.get("NUM_PROXIES", "0")),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Trifecta paper-trading desk API",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "ENUM_NAME_OVERRIDES": {"OpportunityKindEnum": "scanners.models.Opportunity.KINDS"},
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Redis: broker, channel layer and cache. Unset = the bundled server `manage.py run`
# starts (it sets REDIS_URL for its children); a bare `manage.py` process without it
# falls back to the same default port so a developer shell still connects.
REDIS_URL = os.environ.get("REDIS_URL", "")
EMBEDDED_REDIS = not REDIS_URL
if EMBEDDED_REDIS:
    # The bundled server asks for the password kept in var/ (made here when absent, so that the
    # run command's own process, whose settings load before it starts the server, agrees).
    _password = owner_only_file(VAR_DIR / "redis_password")
    REDIS_URL = os.environ.get("TRIFECTA_EMBEDDED_REDIS_URL", f"redis://{':' + _password + '@' if _password else ''}127.0.0.1:6390/0")

CHANNEL_LAYERS = {
    "default": {
        # The pub/sub layer keeps up with 50 broadcasts/s to 200 clients where the core
        # layer falls behind. redis-py 8 caps an async pool at 100 connections: size it.
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, "max_connections": int(os.environ.get("REDIS_MAX_CONNECTIONS", "1000"))}],
        },
    }
}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }
}

# Celery: see trifecta_site/celery.py. Queues: `scan` (feeds and scanners, the only
# processes that import ccxt), `desk` (decisions, execution, monitor, heartbeat), `notify`
# (sending notifications to the operator's channels) and `replay` (a sweep's replays, docs/sweeps.md).
CELERY_BROKER_URL = REDIS_URL  # kombu's own Redis transport, chosen by the URL's scheme
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "desk"
CELERY_TASK_ROUTES = {
    "scanners.tasks.*": {"queue": "scan"},
    "execution.tasks.*": {"queue": "desk"},
    "trifecta_site.tasks.*": {"queue": "desk"},
    "notifications.tasks.*": {"queue": "notify"},  # a slow channel never holds a desk worker
    "sweeps.tasks.*": {"queue": "replay"},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_MAX_MEMORY_PER_CHILD = int(os.environ.get("CELERY_MAX_MEMORY_PER_CHILD_KB", "400000"))
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A task whose worker died unacknowledged is redelivered once it is this old, by the
# sweep every worker runs every CELERY_RESTORE_INTERVAL_S. The sweep's lock expires after
# three intervals, so a worker killed while sweeping does not stop the others for long.
CELERY_RESTORE_INTERVAL_S = int(os.environ.get("CELERY_RESTORE_INTERVAL_S", "10"))
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT_S", "3600")),
    "unacked_restore_interval": CELERY_RESTORE_INTERVAL_S,
    "unacked_restore_throttle": 1,
    "unacked_mutex_expire": 3 * CELERY_RESTORE_INTERVAL_S,
    "socket_timeout": 5, "socket_connect_timeout": 5,
}
# Celery's consumer with one fix: a worker holding unacknowledged tasks reconnects after
# losing Redis instead of exiting (trifecta_site/worker.py says why).
CELERY_WORKER_CONSUMER = "trifecta_site.worker:Consumer"
CELERY_BEAT_SCHEDULER = "trifecta_site.beat:HeartbeatDatabaseScheduler"
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fixup closes the DB connection around every task unless this is set
# (about 5 ms a task on 2 cores); reuse the connection for this many tasks instead. A
# PostgreSQL connection is also renewed once older than CONN_MAX_AGE (celery.py).
CELERY_DB_REUSE_MAX = int(os.environ.get("CELERY_DB_REUSE_MAX", "1000000"))

# Notifications (notifications/, docs/notifications.md): a failed delivery is tried again after
# base × 2^(tries − 1) seconds (at most an hour), and given up after this many tries.
NOTIFICATIONS_RETRY_BASE_S = float(os.environ.get("NOTIFICATIONS_RETRY_BASE_S", "30"))
NOTIFICATIONS_MAX_ATTEMPTS = int(os.environ.get("NOTIFICATIONS_MAX_ATTEMPTS", "6"))

# Market data.
TRIFECTA_FEED = os.environ.get("TRIFECTA_FEED", "replay")
TRIFECTA_RECORDING = os.environ.get("TRIFECTA_RECORDING", "")
TRIFECTA_REPLAY_SPEED = os.environ.get("TRIFECTA_REPLAY_SPEED", "1")
TRIFECTA_VENUES = env_list("TRIFECTA_VENUES", "binance,kraken")
TRIFECTA_SYMBOLS = env_list("TRIFECTA_SYMBOLS", "BTC/USDT,ETH/USDT")
CCXT_TIMEOUT_MS = int(os.environ.get("CCXT_TIMEOUT_MS", "10000"))
# venue=base URL pairs: a venue's public API served elsewhere (a mirror, or the local
# server the tests run), as `manage.py record --urls` takes them.
CCXT_URLS = dict(item.split("=", 1) for item in env_list("CCXT_URLS", "") if "=" in item)
# Streams (docs/streaming.md): the venues the ccxt feed follows by WebSocket where ccxt
# offers it (first value of the admin's feed settings: `*` every venue, empty none), and
# the longest wait between two reconnects of a dropped stream.
TRIFECTA_STREAM_VENUES = env_list("TRIFECTA_STREAM_VENUES", "*")
CCXT_STREAM_BACKOFF_MAX_S = float(os.environ.get("CCXT_STREAM_BACKOFF_MAX_S", "30"))
MT5_SYMBOLS = env_list("MT5_SYMBOLS", "EURUSD,GBPUSD,USDJPY")

# Opportunities and scan runs older than this are pruned (hourly).
TRIFECTA_RETENTION_DAYS = int(os.environ.get("TRIFECTA_RETENTION_DAYS", "30"))

# `manage.py replay` re-runs itself under trifecta_site/replay_settings.py (an isolated
# database); this says which side of that a process is on.
REPLAY_ISOLATED = False

# Controls: initial value of the display-only / auto-execute switch.
AUTO_EXECUTE = env_bool("AUTO_EXECUTE", False)

# WebSocket stream: an open socket's session or token is checked again this often, and the
# socket closed once it no longer holds (user deactivated, logged out, token deleted).
STREAM_RECHECK_S = float(os.environ.get("STREAM_RECHECK_S", "10"))

# Health: a heartbeat older than this marks its process down.
HEARTBEAT_MAX_AGE_S = int(os.environ.get("HEARTBEAT_MAX_AGE_S", "30"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
