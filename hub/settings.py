"""Settings: the TOML file, HUB_* environment overrides and "env:NAME" secrets, validated once."""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import phonenumbers

DEFAULT_CONFIG_FILE = "hub.toml"


class ConfigError(Exception):
    """Every problem found in the configuration, one line each, naming what to fix."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Key:
    """One configuration key a channel, form or section accepts."""

    type: type | tuple[type, ...]
    required: bool = False
    default: Any = None
    secret: bool = False
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChannelConfig:
    name: str
    type: str
    values: Mapping[str, Any]
    pipeline: str | None = None  # the pipeline of the leads this channel opens

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]


@dataclass(frozen=True)
class FormConfig:
    id: str
    fields: tuple[str, ...] = ("name", "phone", "email", "message")
    required: tuple[str, ...] = ("phone",)
    allowed_origins: tuple[str, ...] = ()
    success_url: str | None = None
    rate_limit: str = "30/minute"
    max_body_bytes: int = 64 * 1024
    title: str = "Leave your number and we will call you back"
    submit_label: str = "Send"
    acknowledge: str | None = None  # shown after a successful post
    pipeline: str | None = None  # the pipeline of the leads this form opens


# Won and lost are lead statuses, not stages: every pipeline ends in them.
DEFAULT_STAGES = ("new", "contacted", "qualified", "proposal")
DEFAULT_LOST_REASONS = (
    "no answer",
    "not interested",
    "too expensive",
    "chose a competitor",
    "spam or mistake",
)
DEFAULT_PIPELINE = "default"


@dataclass(frozen=True)
class PipelineConfig:
    """A sales funnel: ordered open stages; a lead in it ends won or lost (with a reason)."""

    name: str
    stages: tuple[str, ...] = DEFAULT_STAGES
    lost_reasons: tuple[str, ...] = DEFAULT_LOST_REASONS


@dataclass(frozen=True)
class FollowUpRule:
    """On a lead entering `stage`, a reminder due `after` later (a [[leads.follow_up]] table)."""

    stage: str
    after: timedelta
    note: str | None = None


@dataclass(frozen=True)
class LeadsConfig:
    callback_within: timedelta = timedelta(minutes=15)
    escalate_after: timedelta = timedelta(minutes=30)
    # The text sent once to a new lead on its own channel; a channel's or form's own
    # `acknowledge` key wins. None: no acknowledgement.
    acknowledge: str | None = None
    # A won lead's contact quiet this long gets a reminder to get back in touch; None: never.
    reengage_after: timedelta | None = timedelta(days=180)
    follow_up: tuple[FollowUpRule, ...] = ()
    lost_reasons: tuple[str, ...] = DEFAULT_LOST_REASONS  # pipelines may list their own
    pipeline: str = DEFAULT_PIPELINE  # for leads whose form or channel names none


@dataclass(frozen=True)
class NotificationsConfig:
    """Which channel carries reminder notifications of each kind; None: the first configured
    channel of that type."""

    telegram_channel: str | None = None
    email_channel: str | None = None
    sms_channel: str | None = None


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class SecurityConfig:
    """ip_allowlist: the networks the API and web inbox answer (empty: everyone); provider
    webhooks and website forms stay open to the internet."""

    ip_allowlist: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("var")
    database_url: str = ""
    redis_url: str | None = None
    redis_prefix: str = "hub:"
    public_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    default_region: str | None = None
    secret_key: str | None = None
    log_level: str = "info"
    log_format: str = "console"
    channels: Mapping[str, ChannelConfig] = field(default_factory=dict)
    forms: Mapping[str, FormConfig] = field(default_factory=dict)
    leads: LeadsConfig = field(default_factory=LeadsConfig)
    notifications: NotificationsConfig = field(default_factory=NotificationsConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    pipelines: Mapping[str, PipelineConfig] = field(
        default_factory=lambda: {DEFAULT_PIPELINE: PipelineConfig(DEFAULT_PIPELINE)}
    )
    config_file: Path | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


# Top-level keys: name -> (type, environment variable that overrides it).
TOP_LEVEL: dict[str, tuple[type | tuple[type, ...], str]] = {
    "data_dir": (str, "HUB_DATA_DIR"),
    "database_url": (str, "HUB_DATABASE_URL"),
    "redis_url": (str, "HUB_REDIS_URL"),
    "redis_prefix": (str, "HUB_REDIS_PREFIX"),
    "public_url": (str, "HUB_PUBLIC_URL"),
    "host": (str, "HUB_HOST"),
    "port": (int, "HUB_PORT"),
    "default_region": (str, "HUB_DEFAULT_REGION"),
    "secret_key": (str, "HUB_SECRET_KEY"),
    "log_level": (str, "HUB_LOG_LEVEL"),
    "log_format": (str, "HUB_LOG_FORMAT"),
}
SECTIONS = ("channels", "forms", "leads", "notifications", "pipelines", "security")

FORM_KEYS: dict[str, Key] = {
    "fields": Key(list, default=["name", "phone", "email", "message"]),
    "required": Key(list),  # default: ["phone"], or ["email"] on a form without a phone
    "allowed_origins": Key(list, default=[]),
    "success_url": Key(str),
    "rate_limit": Key(str, default="30/minute"),
    "max_body_bytes": Key(int, default=64 * 1024),
    "title": Key(str),
    "submit_label": Key(str),
    "acknowledge": Key(str),
    "pipeline": Key(str),
}
# Keys every channel accepts, whatever its type.
COMMON_CHANNEL_KEYS: dict[str, Key] = {
    "acknowledge": Key(str),  # the text sent once to a new lead on this channel
}
LEADS_KEYS: dict[str, Key] = {
    "callback_within": Key(str, default="15m"),
    "escalate_after": Key(str, default="30m"),
    "acknowledge": Key(str),
    "reengage_after": Key(str, default="180d"),  # "off" disables
    "follow_up": Key(list, default=[]),
    "lost_reasons": Key(list),
    "pipeline": Key(str),
}
PIPELINE_KEYS: dict[str, Key] = {
    "stages": Key(list, required=True),
    "lost_reasons": Key(list),
}
FOLLOW_UP_KEYS: dict[str, Key] = {
    "stage": Key(str, required=True),
    "after": Key(str, required=True),
    "note": Key(str),
}
NOTIFICATIONS_KEYS: dict[str, Key] = {
    "telegram_channel": Key(str),
    "email_channel": Key(str),
    "sms_channel": Key(str),
}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
DURATION_RE = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*$")


def parse_duration(text: str) -> timedelta:
    """'15m', '1h30m', '2d', '0s' -> timedelta; ValueError names the accepted form."""
    match = DURATION_RE.match(text)
    if not text.strip() or match is None or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration like '15m', '1h30m', '2d' or '0s'")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def _type_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", list: "a list", bool: "true or false"}
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, k.__name__) for k in kind)
    return names.get(kind, kind.__name__)


def _is_type(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return False
    return isinstance(value, kinds)


class _Reader:
    """Collects problems while reading; resolves "env:NAME" strings from the environment."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []

    def resolve(self, where: str, value: Any) -> Any:
        if isinstance(value, str) and value.startswith("env:"):
            name = value[4:]
            if name not in self.environ or self.environ[name] == "":
                self.problems.append(f"{where}: environment variable {name} is not set")
                return None
            return self.environ[name]
        if isinstance(value, list):
            return [self.resolve(where, v) for v in value]
        return value

    def unknown(self, where: str, key: str, known: Mapping[str, Any] | tuple[str, ...]) -> None:
        hint = difflib.get_close_matches(key, list(known), n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        self.problems.append(f"{where}: unknown key {key!r}{extra}")

    def table(self, where: str, raw: Any, keys: Mapping[str, Key]) -> dict[str, Any]:
        if not isinstance(raw, dict):
            self.problems.append(f"{where}: must be a table, got {type(raw).__name__}")
            return {}
        out: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in keys:
                self.unknown(where, key, keys)
                continue
            spec = keys[key]
            from_env = isinstance(value, str) and value.startswith("env:")
            value = self.resolve(f"{where}.{key}", value)
            if value is None:
                continue
            if from_env and spec.type is int and isinstance(value, str) and value.isdigit():
                value = int(value)  # the environment holds only strings
            if not _is_type(value, spec.type):
                self.problems.append(
                    f"{where}.{key}: must be {_type_name(spec.type)}, got {value!r}"
                )
                continue
            if spec.choices and value not in spec.choices:
                self.problems.append(
                    f"{where}.{key}: must be one of {', '.join(spec.choices)}, got {value!r}"
                )
                continue
            out[key] = value
        for key, spec in keys.items():
            if key in out:
                continue
            if spec.required and key not in raw:
                self.problems.append(f"{where}: missing required key {key!r}")
            elif spec.default is not None:
                out[key] = spec.default
        return out


def _named_tables(
    reader: _Reader, section: str, raw: Any, what: str
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """The [section.NAME] tables with valid names, as (name, where, table)."""
    if not isinstance(raw, dict):
        reader.problems.append(f"{section}: must be a table of [{section}.NAME] tables")
        return
    for name, table in raw.items():
        where = f"{section}.{name}"
        if not NAME_RE.match(name):
            reader.problems.append(f"{where}: the {what} must be letters, digits, '-' or '_'")
        elif not isinstance(table, dict):
            reader.problems.append(f"{where}: must be a table")
        else:
            yield name, where, table


def _read_channels(reader: _Reader, raw: Any) -> dict[str, ChannelConfig]:
    from hub.channels.registry import CHANNEL_TYPES  # the registry imports channel modules

    channels: dict[str, ChannelConfig] = {}
    for name, where, table in _named_tables(reader, "channels", raw, "name"):
        kind = table.get("type")
        webhook_types = sorted(t for t in CHANNEL_TYPES if t != "form")
        if kind is None:
            reader.problems.append(f"{where}: missing required key 'type'")
            continue
        if not isinstance(kind, str) or kind not in CHANNEL_TYPES or kind == "form":
            known = ", ".join(webhook_types) or "(none are available in this version)"
            reader.problems.append(f"{where}.type: unknown channel type {kind!r}; one of {known}")
            continue
        cls = CHANNEL_TYPES[kind]
        body = {k: v for k, v in table.items() if k not in ("type", "pipeline")}
        values = reader.table(where, body, {**COMMON_CHANNEL_KEYS, **cls.config_keys})
        for problem in cls.check_config(name, values):
            reader.problems.append(f"{where}: {problem}")
        pipeline = table.get("pipeline")
        if pipeline is not None and not isinstance(pipeline, str):
            reader.problems.append(f"{where}.pipeline: must be a string, got {pipeline!r}")
            pipeline = None
        channels[name] = ChannelConfig(name=name, type=kind, values=values, pipeline=pipeline)
    return channels


def _read_forms(reader: _Reader, raw: Any) -> dict[str, FormConfig]:
    from limits import parse_many

    forms: dict[str, FormConfig] = {}
    for form_id, where, table in _named_tables(reader, "forms", raw, "form id"):
        values = reader.table(where, table, FORM_KEYS)
        fields = values.get("fields", [])
        if "required" not in table:
            # The default asks for whichever contact field the form has: phone, else e-mail.
            values["required"] = [f for f in ("phone", "email") if f in fields][:1]
        required = values.get("required", [])
        for key in ("fields", "required", "allowed_origins"):
            items = values.get(key, [])
            if any(not isinstance(i, str) for i in items):
                reader.problems.append(f"{where}.{key}: every entry must be a string")
        for name in required:
            if name not in fields:
                reader.problems.append(f"{where}.required: {name!r} is not one of the fields")
        if not any(f in fields for f in ("phone", "email")):
            reader.problems.append(
                f"{where}.fields: needs 'phone' or 'email', or nobody can call back"
            )
        for origin in values.get("allowed_origins", []):
            if origin != "*" and not re.match(r"^https?://[^/\s]+$", str(origin)):
                reader.problems.append(
                    f"{where}.allowed_origins: {origin!r} is not an origin like "
                    "'https://shop.example.com' (scheme and host, no path) or '*'"
                )
        success_url = values.get("success_url")
        if success_url is not None and not re.match(r"^https?://\S+$", success_url):
            reader.problems.append(f"{where}.success_url: {success_url!r} is not an http(s) URL")
        try:
            if not parse_many(values.get("rate_limit", "30/minute")):
                raise ValueError
        except ValueError:
            reader.problems.append(
                f"{where}.rate_limit: {values.get('rate_limit')!r} is not a rate like "
                "'30/minute' or '5/second;100/hour'"
            )
        if values.get("max_body_bytes", 1) <= 0:
            reader.problems.append(f"{where}.max_body_bytes: must be positive")
        defaults = FormConfig(id=form_id)
        forms[form_id] = FormConfig(
            id=form_id,
            fields=tuple(str(f) for f in fields),
            required=tuple(str(r) for r in required),
            allowed_origins=tuple(str(o) for o in values.get("allowed_origins", [])),
            success_url=success_url,
            rate_limit=values.get("rate_limit", defaults.rate_limit),
            max_body_bytes=values.get("max_body_bytes", defaults.max_body_bytes),
            title=values.get("title", defaults.title),
            submit_label=values.get("submit_label", defaults.submit_label),
            acknowledge=values.get("acknowledge"),
            pipeline=values.get("pipeline"),
        )
    return forms


def _read_leads(reader: _Reader, raw: Any) -> LeadsConfig:
    values = reader.table("leads", raw, LEADS_KEYS)
    out: dict[str, Any] = {}
    for key in ("callback_within", "escalate_after"):
        try:
            out[key] = parse_duration(values.get(key, LEADS_KEYS[key].default))
        except ValueError as exc:
            reader.problems.append(f"leads.{key}: {exc}")
    reengage = values.get("reengage_after", "180d")
    if reengage.strip().lower() in ("off", "never", ""):
        out["reengage_after"] = None
    else:
        try:
            out["reengage_after"] = parse_duration(reengage) or None
        except ValueError as exc:
            reader.problems.append(f"leads.reengage_after: {exc} (or 'off')")
    if values.get("acknowledge"):
        out["acknowledge"] = values["acknowledge"]
    rules: list[FollowUpRule] = []
    for number, table in enumerate(values.get("follow_up", []), start=1):
        where = f"leads.follow_up[{number}]"
        rule = reader.table(where, table, FOLLOW_UP_KEYS)
        if "stage" not in rule or "after" not in rule:
            continue
        try:
            after = parse_duration(rule["after"])
        except ValueError as exc:
            reader.problems.append(f"{where}.after: {exc}")
            continue
        rules.append(FollowUpRule(stage=rule["stage"], after=after, note=rule.get("note")))
    out["follow_up"] = tuple(rules)
    if "lost_reasons" in values:
        out["lost_reasons"] = _names(reader, "leads.lost_reasons", values["lost_reasons"], "reason")
    if "pipeline" in values:
        out["pipeline"] = values["pipeline"]
    return LeadsConfig(**out)


def _names(reader: _Reader, where: str, raw: list[Any], what: str) -> tuple[str, ...]:
    """A list of distinct non-empty strings (stages, lost reasons), or problems naming the key."""
    names: list[str] = []
    for item in raw:
        if not isinstance(item, str) or not item.strip():
            reader.problems.append(
                f"{where}: every {what} must be a non-empty string, got {item!r}"
            )
        elif item.strip() in names:
            reader.problems.append(f"{where}: {item.strip()!r} is listed twice")
        elif len(item.strip()) > 64:
            reader.problems.append(f"{where}: {item.strip()[:20]!r}... is over 64 characters")
        else:
            names.append(item.strip())
    if not names and not raw:
        reader.problems.append(f"{where}: needs at least one {what}")
    return tuple(names)


def _read_pipelines(reader: _Reader, raw: Any, leads: LeadsConfig) -> dict[str, PipelineConfig]:
    """[pipelines.NAME] tables, plus the built-in "default" pipeline unless one replaces it."""
    pipelines = {
        DEFAULT_PIPELINE: PipelineConfig(DEFAULT_PIPELINE, lost_reasons=leads.lost_reasons)
    }
    for name, where, table in _named_tables(reader, "pipelines", raw, "pipeline name"):
        values = reader.table(where, table, PIPELINE_KEYS)
        stages = _names(reader, f"{where}.stages", values.get("stages", []), "stage")
        for status in ("won", "lost", "open"):
            if status in stages:
                reader.problems.append(
                    f"{where}.stages: {status!r} is a lead status, not a stage; list only the "
                    "open stages (every lead ends won or lost)"
                )
        reasons = leads.lost_reasons
        if "lost_reasons" in values:
            reasons = _names(reader, f"{where}.lost_reasons", values["lost_reasons"], "reason")
        pipelines[name] = PipelineConfig(name, stages=stages, lost_reasons=reasons)
    return pipelines


def _check_pipeline_names(
    reader: _Reader,
    pipelines: Mapping[str, PipelineConfig],
    leads: LeadsConfig,
    channels: Mapping[str, ChannelConfig],
    forms: Mapping[str, FormConfig],
) -> None:
    named = [("leads.pipeline", leads.pipeline)]
    named += [(f"channels.{c.name}.pipeline", c.pipeline) for c in channels.values() if c.pipeline]
    named += [(f"forms.{f.id}.pipeline", f.pipeline) for f in forms.values() if f.pipeline]
    for where, name in named:
        if name not in pipelines:
            known = ", ".join(sorted(pipelines))
            reader.problems.append(f"{where}: no pipeline {name!r}; one of {known}")


def _read_notifications(
    reader: _Reader, raw: Any, channels: Mapping[str, ChannelConfig]
) -> NotificationsConfig:
    values = reader.table("notifications", raw, NOTIFICATIONS_KEYS)
    wanted = {"telegram_channel": "telegram", "email_channel": "email", "sms_channel": "twilio"}
    for key, kind in wanted.items():
        name = values.get(key)
        if name is None:
            continue
        config = channels.get(name)
        if config is None or config.type != kind:
            known = sorted(n for n, c in channels.items() if c.type == kind)
            reader.problems.append(
                f"notifications.{key}: no {kind} channel {name!r}; "
                f"configured: {', '.join(known) or 'none'}"
            )
    return NotificationsConfig(**values)


SECURITY_KEYS: dict[str, Key] = {"ip_allowlist": Key(list, default=[])}


def _read_security(reader: _Reader, raw: Any) -> SecurityConfig:
    values = reader.table("security", raw, SECURITY_KEYS)
    networks: list[IPNetwork] = []
    for i, entry in enumerate(values.get("ip_allowlist", [])):
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=True))
        except (AttributeError, ValueError) as exc:
            reader.problems.append(
                f"security.ip_allowlist[{i}]: {entry!r} is not a network in CIDR notation "
                f"like '10.0.0.0/8' or '2001:db8::/32' ({exc})"
            )
    return SecurityConfig(ip_allowlist=tuple(networks))


def config_path(environ: Mapping[str, str]) -> Path | None:
    """HUB_CONFIG when set (it must exist), else ./hub.toml when it exists, else none."""
    if environ.get("HUB_CONFIG"):
        return Path(environ["HUB_CONFIG"])
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.exists() else None


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the configuration once, at the entrypoint; raise ConfigError listing every problem."""
    env = dict(os.environ if environ is None else environ)
    path = path if path is not None else config_path(env)
    reader = _Reader(env)
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError([f"{path}: configuration file not found (HUB_CONFIG)"]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([f"{path}: cannot read the configuration file: {exc}"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None

    top: dict[str, Any] = {}
    for key, value in raw.items():
        if key in SECTIONS:
            continue
        if key not in TOP_LEVEL:
            reader.unknown("(top level)", key, {**TOP_LEVEL, **dict.fromkeys(SECTIONS)})
            continue
        kind, var = TOP_LEVEL[key]
        if env.get(var):
            continue  # the environment wins; a secret the file names need not be set then
        from_env = isinstance(value, str) and value.startswith("env:")
        value = reader.resolve(key, value)
        if value is None:
            continue
        if from_env and kind is int:
            try:
                value = int(value)
            except ValueError:
                reader.problems.append(f"{key}: must be an integer, got {value!r}")
                continue
        if not _is_type(value, kind):
            reader.problems.append(f"{key}: must be {_type_name(kind)}, got {value!r}")
            continue
        top[key] = value
    for key, (kind, var) in TOP_LEVEL.items():
        if env.get(var):
            value = env[var]
            if kind is int:
                try:
                    top[key] = int(value)
                except ValueError:
                    reader.problems.append(f"{var}: must be an integer, got {value!r}")
            else:
                top[key] = value

    data_dir = Path(top.get("data_dir", "var"))
    database_url = top.get("database_url") or f"sqlite+aiosqlite:///{data_dir / 'hub.db'}"
    if not re.match(r"^(sqlite\+aiosqlite|postgresql\+asyncpg|postgresql)://", database_url):
        reader.problems.append(
            "database_url: must start with sqlite+aiosqlite:// or postgresql+asyncpg://, "
            f"got {database_url.split('://')[0]!r}"
        )
    elif database_url.startswith("postgresql://"):
        database_url = "postgresql+asyncpg://" + database_url.removeprefix("postgresql://")
    redis_url = top.get("redis_url") or None
    if redis_url is not None and not re.match(r"^(redis|rediss|unix)://", redis_url):
        reader.problems.append(
            f"redis_url: must start with redis://, rediss:// or unix://, got {redis_url!r}"
        )
    region = top.get("default_region")
    if region is not None:
        region = region.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            reader.problems.append(
                f"default_region: {region!r} is not an ISO country code like 'UZ' or 'US'"
            )
    public_url = top.get("public_url")
    if public_url is not None:
        if not re.match(r"^https?://[^/\s]+(/\S*)?$", public_url):
            reader.problems.append(f"public_url: {public_url!r} is not an http(s) URL")
        public_url = public_url.rstrip("/")
    port = top.get("port", 8080)
    if not 0 <= port <= 65535:
        source = "HUB_PORT" if env.get("HUB_PORT") else "port"
        reader.problems.append(f"{source}: {port} is not a TCP port")
    if top.get("log_format", "console") not in ("console", "json"):
        reader.problems.append("log_format: must be 'console' or 'json'")

    channels = _read_channels(reader, raw.get("channels", {}))
    forms = _read_forms(reader, raw.get("forms", {}))
    leads = _read_leads(reader, raw.get("leads", {}))
    pipelines = _read_pipelines(reader, raw.get("pipelines", {}), leads)
    _check_pipeline_names(reader, pipelines, leads, channels, forms)
    notifications = _read_notifications(reader, raw.get("notifications", {}), channels)
    security = _read_security(reader, raw.get("security", {}))
    if reader.problems:
        raise ConfigError(reader.problems)
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=top.get("redis_prefix", "hub:"),
        public_url=public_url,
        host=top.get("host", "127.0.0.1"),
        port=port,
        default_region=region,
        secret_key=top.get("secret_key"),
        log_level=top.get("log_level", "info"),
        log_format=top.get("log_format", "console"),
        channels=channels,
        forms=forms,
        leads=leads,
        notifications=notifications,
        security=security,
        pipelines=pipelines,
        config_file=path,
    )
