"""Settings, read from the environment only (django-environ).

Nothing set means the embedded default: SQLite in ./var, a filesystem Celery broker
that needs no server, and emails printed to the console. Production sets DATABASE_URL,
REDIS_URL, SECRET_KEY, ALLOWED_HOSTS, EMAIL_URL and HTTPS=true (see .env.example).
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEV_SECRET_KEY = "dev-only-not-secret-0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a"

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default=DEV_SECRET_KEY)
# Previous keys, comma-separated, newest first, while rotating SECRET_KEY: sessions and
# invoice page links made under them keep working (README, "Rotating SECRET_KEY").
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# An invoice has up to 250 lines of ~12 admin fields each; Django's default (1000) stops at ~80.
DATA_UPLOAD_MAX_NUMBER_FIELDS = 4000

INSTALLED_APPS = [
    # The admin's theme (README, "The admin"): before django.contrib.admin, whose
    # templates it replaces.
    "unfold",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.forms",
    "django_celery_beat",
    "customers",
    "invoices",
    "subscriptions",
    "automations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "billing_site.middleware.StaffSessionMiddleware",
    "billing_site.middleware.SiteLocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "billing_site.middleware.StaffAuthenticationMiddleware",
    "billing_site.middleware.StaffMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# The admin's theme (django-unfold): the project's stylesheet for its own parts (rows
# inputs, invoice buttons, timelines, the dashboard) on top of the theme's.
UNFOLD = {
    "SITE_TITLE": "Billing",
    "SITE_HEADER": "Billing back office",
    "SITE_SYMBOL": "receipt_long",
    "SHOW_HISTORY": True,
    "SHOW_VIEW_ON_SITE": False,
    "STYLES": ["billing_site.theme.stylesheet"],
    "DASHBOARD_CALLBACK": "automations.dashboard.dashboard_callback",
    "SITE_FAVICONS": [
        {"rel": "icon", "type": "image/svg+xml", "href": "billing_site.theme.favicon"},
    ],
}

# Widgets' templates are looked up like every other template (templates/admin/widgets).
FORM_RENDERER = "django.forms.renderers.TemplatesSetting"

ROOT_URLCONF = "billing_site.urls"
WSGI_APPLICATION = "billing_site.wsgi.application"

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

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# Persistent connections: opening one costs more than a whole page of queries. Health
# checks drop a connection that died (database restart) before a request uses it.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # The same backend, with a health check that asks the socket before it asks the
    # server (billing_site/postgresql/base.py).
    DATABASES["default"]["ENGINE"] = "billing_site.postgresql"
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Concurrent web, worker and beat processes share one file on the embedded default.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].setdefault("timeout", 20)
    DATABASES["default"]["OPTIONS"].setdefault(
        "init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    )
    DATABASES["default"]["OPTIONS"].setdefault("transaction_mode", "IMMEDIATE")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("fr", "Français"), ("pt-br", "Português (Brasil)")]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
TIME_ZONE = "UTC"
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.str("STATIC_ROOT", default=str(VAR_DIR / "static"))
MEDIA_URL = "media/"
MEDIA_ROOT = env.str("MEDIA_ROOT", default=str(VAR_DIR / "media"))

# Email: SMTP in production (smtp+tls://user:pass@host:587), the console by default.
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
if EMAIL_BACKEND == "django.core.mail.backends.console.EmailBackend":  # noqa: F821
    # Headers, text and attachments' names and sizes: no base64 in the quick start's log.
    EMAIL_BACKEND = "automations.notifications.console.EmailBackend"
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="billing@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Staff alerts and digests may go to staff users and to addresses in this domain only
# (else the domain of the support address on the branding).
COMPANY_EMAIL_DOMAIN = env.str("COMPANY_EMAIL_DOMAIN", default="")

# Celery: Redis in production; a filesystem broker (no server) on the embedded default.
REDIS_URL = env.str("REDIS_URL", default="")
# ("localhost" names no server: kombu only warns at every start when the URL has no host.)
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://localhost/")
# Publishing (the wake-ups sent after a commit) gives up at once when the broker does not
# answer, rather than retrying its connection for seconds inside a staff's request: the
# work is in the database and the beat sweeps do it anyway. (Workers reconnect their
# consumers with their own retry settings.)
CELERY_BROKER_TRANSPORT_OPTIONS = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "celery-broker"
    CELERY_BROKER_TRANSPORT_OPTIONS |= {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(_broker_dir / "processed"),
        # Exchange tables; kombu's default is ./control, in whatever folder runs it.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# What a task prints (the console email backend's emails) is logged at INFO, not WARNING.
CELERY_WORKER_REDIRECT_STDOUTS_LEVEL = "INFO"
CELERY_TIMEZONE = "UTC"

# Cache (rate limits of the hosted invoice page): CACHE_URL when set, else Redis when
# REDIS_URL is set (shared by every web process, as rate limits must be), else memory
# local to each process (the embedded default has one web process).
_cache_url = env.str("CACHE_URL", default="") or REDIS_URL or "locmemcache://"
CACHES = {"default": environ.Env.cache_url_config(_cache_url)}
CACHES["default"].setdefault("KEY_PREFIX", "billing")
if CACHES["default"]["BACKEND"].endswith("RedisCache"):
    # A Redis that does not answer fails fast: the rate limits then count in the database.
    CACHES["default"].setdefault("OPTIONS", {}).update(socket_connect_timeout=1, socket_timeout=1)

# Absolute links to customer pages in emails when there is no request to build them from.
# Left unset outside DEBUG, `manage.py check --deploy` refuses it (billing.E003): every
# emailed link would point at localhost.
DEFAULT_SITE_URL = "http://localhost:8000"
SITE_URL = (env.str("SITE_URL", default="") or DEFAULT_SITE_URL).rstrip("/")

# Payment gateway: a dotted path to an invoices.gateways.base.Gateway subclass
# (docs/gateways.md). The simulated gateway needs no account; Stripe needs its key.
PAYMENT_GATEWAY = env.str("PAYMENT_GATEWAY", default="invoices.gateways.simulated.SimulatedGateway")
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")

# HTTPS=true in production: redirect to https, secure cookies, HSTS.
HTTPS = env.bool("HTTPS", default=False)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
BEHIND_PROXY = env.bool("BEHIND_PROXY", default=False)
if BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Invoice page tokens are credentials: redacted from every logged message.
    "filters": {"invoice_tokens": {"()": "invoices.hosted.logs.RedactInvoiceTokens"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "filters": ["invoice_tokens"]},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # WeasyPrint reports each rendering step at INFO; warnings (a missing font) still show.
    "loggers": {"weasyprint": {"level": "WARNING"}, "fontTools": {"level": "WARNING"}},
}
