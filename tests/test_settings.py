"""Settings: the TOML file, HUB_* overrides, "env:NAME" secrets, and every problem reported at
once, each naming the table path to fix; `hub check-config` prints them line by line."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from hub.settings import (
    TOP_LEVEL,
    ConfigError,
    FormConfig,
    LeadsConfig,
    load_settings,
    parse_duration,
)
from hubcli.main import main

# The DESIGN.md example without [channels.*]: only forms are a channel type so far.
FULL_CONFIG = """
default_region = "UZ"

[forms.callback]
fields = ["name", "phone", "email", "message"]
required = ["phone"]
allowed_origins = ["https://shop.example.com"]
success_url = "https://shop.example.com/thanks"   # optional, for plain HTML posts
rate_limit = "30/minute"

[leads]
callback_within = "15m"
escalate_after = "30m"
"""

HUB_VARS = [var for _kind, var in TOP_LEVEL.values()]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No HUB_* variable of the developer's shell and no ./hub.toml leak into a test."""
    for var in [*HUB_VARS, "HUB_CONFIG"]:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str, name: str = "hub.test.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), environ or {})
    return info.value.problems


# --- a valid file, defaults ------------------------------------------------------------------


def test_full_valid_config(tmp_path: Path) -> None:
    path = write(tmp_path, FULL_CONFIG)
    settings = load_settings(path, {})
    assert settings.config_file == path
    assert settings.default_region == "UZ"
    assert settings.channels == {}
    assert settings.forms == {
        "callback": FormConfig(
            id="callback",
            fields=("name", "phone", "email", "message"),
            required=("phone",),
            allowed_origins=("https://shop.example.com",),
            success_url="https://shop.example.com/thanks",
            rate_limit="30/minute",
        )
    }
    assert settings.leads == LeadsConfig(
        callback_within=timedelta(minutes=15), escalate_after=timedelta(minutes=30)
    )


def test_form_defaults_and_leads_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "[forms.minimal]\n"), {})
    form = settings.forms["minimal"]
    assert form.fields == ("name", "phone", "email", "message")
    assert form.required == ("phone",)
    assert form.allowed_origins == ()
    assert form.success_url is None
    assert form.rate_limit == "30/minute"
    assert settings.leads == LeadsConfig(
        callback_within=timedelta(minutes=15), escalate_after=timedelta(minutes=30)
    )


def test_leads_zero_means_at_once(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, '[leads]\ncallback_within = "0s"\n'), {})
    assert settings.leads.callback_within == timedelta(0)


def test_defaults_without_a_file() -> None:
    settings = load_settings(None, {})
    assert settings.config_file is None
    assert settings.data_dir == Path("var")
    assert settings.database_url == "sqlite+aiosqlite:///var/hub.db"
    assert settings.is_sqlite
    assert settings.redis_url is None  # embedded Redis
    assert settings.redis_prefix == "hub:"
    assert settings.host == "127.0.0.1"
    assert settings.port == 8080
    assert settings.public_url is None
    assert settings.default_region is None
    assert settings.secret_key is None
    assert settings.channels == {}
    assert settings.forms == {}


def test_default_database_lives_in_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings(None, {"HUB_DATA_DIR": str(tmp_path / "data")})
    assert settings.data_dir == tmp_path / "data"
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'data' / 'hub.db'}"


def test_hub_config_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'host = "0.0.0.0"\n', name="elsewhere.toml")
    settings = load_settings(None, {"HUB_CONFIG": str(path)})
    assert settings.config_file == path
    assert settings.host == "0.0.0.0"


def test_hub_toml_in_the_working_directory_is_the_default(tmp_path: Path) -> None:
    write(tmp_path, "port = 9999\n", name="hub.toml")  # clean_env chdir'ed into tmp_path
    settings = load_settings(None, {})
    assert settings.port == 9999
    assert settings.config_file == Path("hub.toml")


def test_hub_config_pointing_at_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"HUB_CONFIG": str(missing)})
    [problem] = info.value.problems
    assert str(missing) in problem
    assert "not found" in problem


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "port = = 1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    [problem] = info.value.problems
    assert problem.startswith(str(path))
    assert "not valid TOML" in problem


# --- HUB_* overrides -------------------------------------------------------------------------

# (variable, the file's line, the Settings attribute, the variable's value, what it becomes)
OVERRIDES = [
    (
        "HUB_DATABASE_URL",
        'database_url = "sqlite+aiosqlite:///file.db"',
        "database_url",
        "postgresql+asyncpg://hub@db.example.com/hub",
        "postgresql+asyncpg://hub@db.example.com/hub",
    ),
    (
        "HUB_DATABASE_URL",
        'database_url = "sqlite+aiosqlite:///file.db"',
        "database_url",
        "postgresql://hub@db.example.com/hub",
        "postgresql+asyncpg://hub@db.example.com/hub",
    ),
    (
        "HUB_REDIS_URL",
        'redis_url = "redis://file.example.com:6379/0"',
        "redis_url",
        "redis://env.example.com:6379/1",
        "redis://env.example.com:6379/1",
    ),
    (
        "HUB_PUBLIC_URL",
        'public_url = "https://file.example.com"',
        "public_url",
        "https://env.example.com",
        "https://env.example.com",
    ),
    ("HUB_HOST", 'host = "0.0.0.0"', "host", "10.1.2.3", "10.1.2.3"),
    ("HUB_PORT", "port = 9000", "port", "9100", 9100),
    ("HUB_DATA_DIR", 'data_dir = "filedata"', "data_dir", "/srv/hub", Path("/srv/hub")),
    ("HUB_DEFAULT_REGION", 'default_region = "US"', "default_region", "uz", "UZ"),
    ("HUB_SECRET_KEY", 'secret_key = "file-secret"', "secret_key", "env-secret", "env-secret"),
    ("HUB_REDIS_PREFIX", 'redis_prefix = "file:"', "redis_prefix", "tenant-a:", "tenant-a:"),
]


@pytest.mark.parametrize(
    ("var", "line", "attr", "value", "expected"),
    OVERRIDES,
    ids=[f"{o[0]}-{i}" for i, o in enumerate(OVERRIDES)],
)
def test_environment_beats_the_file(
    tmp_path: Path, var: str, line: str, attr: str, value: str, expected: object
) -> None:
    path = write(tmp_path, line + "\n")
    from_file = load_settings(path, {})
    assert getattr(from_file, attr) != expected
    settings = load_settings(path, {var: value})
    assert getattr(settings, attr) == expected


def test_every_documented_variable_is_covered() -> None:
    documented = {
        "HUB_DATABASE_URL",
        "HUB_REDIS_URL",
        "HUB_PUBLIC_URL",
        "HUB_HOST",
        "HUB_PORT",
        "HUB_DATA_DIR",
        "HUB_DEFAULT_REGION",
        "HUB_SECRET_KEY",
        "HUB_REDIS_PREFIX",
    }
    assert documented <= set(HUB_VARS)
    assert documented == {o[0] for o in OVERRIDES}


def test_data_dir_override_moves_the_default_database(tmp_path: Path) -> None:
    path = write(tmp_path, 'data_dir = "filedata"\n')
    settings = load_settings(path, {"HUB_DATA_DIR": "/srv/hub"})
    assert settings.database_url == "sqlite+aiosqlite:////srv/hub/hub.db"


def test_empty_variable_does_not_override(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "port = 9000\n"), {"HUB_PORT": ""})
    assert settings.port == 9000


def test_public_url_loses_its_trailing_slash() -> None:
    settings = load_settings(None, {"HUB_PUBLIC_URL": "https://hub.example.com/"})
    assert settings.public_url == "https://hub.example.com"


# --- "env:NAME" secrets -----------------------------------------------------------------------


def test_env_secrets_are_resolved(tmp_path: Path) -> None:
    text = (
        'secret_key = "env:MY_SECRET"\n'
        'redis_url = "env:MY_REDIS"\n'
        "[forms.callback]\n"
        'success_url = "env:THANKS_URL"\n'
        'allowed_origins = ["env:SHOP_ORIGIN"]\n'
    )
    environ = {
        "MY_SECRET": "s3cr3t",
        "MY_REDIS": "redis://cache.internal:6379/2",
        "THANKS_URL": "https://shop.example.com/thanks",
        "SHOP_ORIGIN": "https://shop.example.com",
    }
    settings = load_settings(write(tmp_path, text), environ)
    assert settings.secret_key == "s3cr3t"
    assert settings.redis_url == "redis://cache.internal:6379/2"
    assert settings.forms["callback"].success_url == "https://shop.example.com/thanks"
    assert settings.forms["callback"].allowed_origins == ("https://shop.example.com",)


@pytest.mark.parametrize(
    ("text", "environ", "path", "var"),
    [
        ('secret_key = "env:MISSING_SECRET"\n', {}, "secret_key", "MISSING_SECRET"),
        ('secret_key = "env:EMPTY_SECRET"\n', {"EMPTY_SECRET": ""}, "secret_key", "EMPTY_SECRET"),
        (
            '[forms.callback]\nsuccess_url = "env:MISSING_URL"\n',
            {},
            "forms.callback.success_url",
            "MISSING_URL",
        ),
        (
            '[leads]\ncallback_within = "env:MISSING_DELAY"\n',
            {},
            "leads.callback_within",
            "MISSING_DELAY",
        ),
    ],
    ids=["top-level", "empty", "form", "leads"],
)
def test_missing_env_secret_names_key_and_variable(
    tmp_path: Path, text: str, environ: dict[str, str], path: str, var: str
) -> None:
    problems = problems_of(tmp_path, text, environ)
    assert any(p.startswith(f"{path}:") and var in p and "not set" in p for p in problems), problems


# --- problems, each naming its table path ----------------------------------------------------

FORM = '[forms.callback]\nfields = ["name", "phone", "email"]\n'

# (id, file text, environment, the path the problem starts with, fragments it contains)
ERRORS: list[tuple[str, str, dict[str, str], str, list[str]]] = [
    (
        "unknown-top-level-key",
        'databse_url = "sqlite+aiosqlite:///x.db"\n',
        {},
        "(top level)",
        ["unknown key 'databse_url'", "did you mean 'database_url'"],
    ),
    (
        "unknown-section",
        '[form.callback]\nfields = ["phone"]\n',
        {},
        "(top level)",
        ["unknown key 'form'", "did you mean 'forms'"],
    ),
    ("port-wrong-type", 'port = "x"\n', {}, "port", ["must be an integer", "'x'"]),
    ("port-out-of-range", "port = 70000\n", {}, "port", ["70000", "not a TCP port"]),
    ("bad-HUB_PORT", "", {"HUB_PORT": "eighty"}, "HUB_PORT", ["must be an integer", "'eighty'"]),
    ("bad-default-region", 'default_region = "XX"\n', {}, "default_region", ["'XX'"]),
    ("bad-HUB_DEFAULT_REGION", "", {"HUB_DEFAULT_REGION": "Narnia"}, "default_region", []),
    (
        "database-url-scheme",
        'database_url = "mysql://hub@db/hub"\n',
        {},
        "database_url",
        ["sqlite+aiosqlite://", "postgresql+asyncpg://", "'mysql'"],
    ),
    (
        "database-url-sync-sqlite",
        'database_url = "sqlite:///hub.db"\n',
        {},
        "database_url",
        ["'sqlite'"],
    ),
    (
        "HUB_DATABASE_URL-scheme",
        "",
        {"HUB_DATABASE_URL": "mysql://hub@db/hub"},
        "database_url",
        ["'mysql'"],
    ),
    (
        "redis-url-scheme",
        'redis_url = "http://localhost:6379"\n',
        {},
        "redis_url",
        ["redis://", "'http://localhost:6379'"],
    ),
    (
        "HUB_REDIS_URL-scheme",
        "",
        {"HUB_REDIS_URL": "localhost:6379"},
        "redis_url",
        ["'localhost:6379'"],
    ),
    ("public-url", 'public_url = "hub.example.com"\n', {}, "public_url", ["'hub.example.com'"]),
    ("log-format", 'log_format = "xml"\n', {}, "log_format", ["json"]),
    (
        "form-unknown-key",
        FORM + 'feilds = ["phone"]\n',
        {},
        "forms.callback",
        ["unknown key 'feilds'", "did you mean 'fields'"],
    ),
    (
        "form-wrong-type",
        '[forms.callback]\nfields = "phone"\n',
        {},
        "forms.callback.fields",
        ["must be a list"],
    ),
    (
        "form-required-not-a-field",
        '[forms.callback]\nfields = ["name", "phone"]\nrequired = ["email"]\n',
        {},
        "forms.callback.required",
        ["'email'", "not one of the fields"],
    ),
    (
        "form-neither-phone-nor-email",
        '[forms.callback]\nfields = ["name", "message"]\nrequired = ["name"]\n',
        {},
        "forms.callback.fields",
        ["'phone' or 'email'"],
    ),
    (
        "origin-with-path",
        FORM + 'allowed_origins = ["https://shop.example.com/contact"]\n',
        {},
        "forms.callback.allowed_origins",
        ["'https://shop.example.com/contact'", "no path"],
    ),
    (
        "origin-without-scheme",
        FORM + 'allowed_origins = ["shop.example.com"]\n',
        {},
        "forms.callback.allowed_origins",
        ["'shop.example.com'"],
    ),
    (
        "bad-rate-limit",
        FORM + 'rate_limit = "lots"\n',
        {},
        "forms.callback.rate_limit",
        ["'lots'", "30/minute"],
    ),
    (
        "bad-success-url",
        FORM + 'success_url = "/thanks"\n',
        {},
        "forms.callback.success_url",
        ["'/thanks'"],
    ),
    (
        "max-body-bytes",
        FORM + "max_body_bytes = 0\n",
        {},
        "forms.callback.max_body_bytes",
        ["positive"],
    ),
    (
        "bad-form-id",
        '[forms."call back"]\nfields = ["phone"]\n',
        {},
        "forms.call back",
        ["letters, digits"],
    ),
    (
        "leads-callback-within",
        '[leads]\ncallback_within = "15 minutes"\n',
        {},
        "leads.callback_within",
        ["'15 minutes'", "15m"],
    ),
    (
        "leads-escalate-after",
        '[leads]\nescalate_after = "half an hour"\n',
        {},
        "leads.escalate_after",
        ["'half an hour'"],
    ),
    (
        "leads-wrong-type",
        "[leads]\ncallback_within = 15\n",
        {},
        "leads.callback_within",
        ["must be a string"],
    ),
    (
        "leads-unknown-key",
        '[leads]\ncallback_in = "15m"\n',
        {},
        "leads",
        ["unknown key 'callback_in'", "did you mean 'callback_within'"],
    ),
    (
        "unknown-channel-type",
        '[channels.pigeons]\ntype = "carrier-pigeon"\n',
        {},
        "channels.pigeons.type",
        ["unknown channel type 'carrier-pigeon'"],
    ),
    (
        "channel-without-type",
        '[channels.pigeons]\nloft = "roof"\n',
        {},
        "channels.pigeons",
        ["missing required key 'type'"],
    ),
    (
        "form-is-not-a-webhook-channel-type",
        '[channels.site]\ntype = "form"\n',
        {},
        "channels.site.type",
        ["unknown channel type 'form'"],
    ),
]


@pytest.mark.parametrize(
    ("text", "environ", "path", "fragments"),
    [e[1:] for e in ERRORS],
    ids=[e[0] for e in ERRORS],
)
def test_problem_names_its_path(
    tmp_path: Path, text: str, environ: dict[str, str], path: str, fragments: list[str]
) -> None:
    problems = problems_of(tmp_path, text, environ)
    matching = [p for p in problems if p.startswith(f"{path}:") or p.startswith(f"{path}.")]
    assert any(all(f in p for f in fragments) for p in matching), problems


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    text = (
        'databse_url = "x"\n'
        'port = "x"\n'
        'default_region = "XX"\n'
        'redis_url = "http://cache"\n'
        'secret_key = "env:NOT_THERE"\n'
        "[forms.callback]\n"
        'fields = ["name", "message"]\n'
        'allowed_origins = ["https://shop.example.com/"]\n'
        'rate_limit = "often"\n'
        "[leads]\n"
        'callback_within = "15 minutes"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), {"HUB_PORT": "x"})
    problems = info.value.problems
    for path in [
        "(top level)",
        "HUB_PORT",  # the environment wins over the file's port, so only HUB_PORT is checked
        "default_region",
        "redis_url",
        "secret_key",
        "forms.callback.fields",
        "forms.callback.allowed_origins",
        "forms.callback.rate_limit",
        "leads.callback_within",
    ]:
        assert any(p.startswith(f"{path}:") for p in problems), (path, problems)
    assert str(info.value).splitlines() == problems
    assert len(problems) >= 9


def test_leads_not_a_table_is_a_problem(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, 'leads = "15m"\n')
    assert any(p.startswith("leads:") for p in problems)


def test_channel_type_not_a_string_is_a_problem(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, '[channels.x]\ntype = ["telegram"]\n')
    assert any(p.startswith("channels.x") for p in problems)


# --- parse_duration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15m", timedelta(minutes=15)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        ("0s", timedelta(0)),
        ("90s", timedelta(seconds=90)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "  ", "15", "m", "1x", "15 minutes", "m15", "-5m"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="15m"):
        parse_duration(text)


# --- hub check-config -------------------------------------------------------------------------


def test_check_config_ok(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, 'secret_key = "env:HUB_TEST_CHECK_SECRET"\n' + FULL_CONFIG)
    monkeypatch.setenv("HUB_CONFIG", str(path))
    monkeypatch.setenv("HUB_TEST_CHECK_SECRET", "do-not-print-me")
    monkeypatch.setenv("HUB_DATABASE_URL", "postgresql+asyncpg://hub:hunter2@db.example.com/hub")
    assert main(["check-config"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "configuration OK" in out
    assert (
        "form callback: fields name, phone, email, message; origins https://shop.example.com"
        in (out)
    )
    assert str(path) in out
    assert "db.example.com/hub" in out
    assert "hunter2" not in out  # credentials in the URL are not printed
    assert "do-not-print-me" not in out


def test_check_config_without_a_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "configuration OK" in out
    assert "(none" in out
    assert "embedded" in out


def test_check_config_reports_every_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        'port = "x"\n'
        "[forms.callback]\n"
        'fields = ["name", "message"]\n'
        "[leads]\n"
        'escalate_after = "half an hour"\n'
    )
    monkeypatch.setenv("HUB_CONFIG", str(write(tmp_path, text)))
    monkeypatch.setenv("HUB_REDIS_URL", "memcached://x")
    assert main(["check-config"]) == 1
    out, err = capsys.readouterr()
    assert "configuration OK" not in out
    lines = err.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    for path in ["port", "redis_url", "forms.callback.fields", "leads.escalate_after"]:
        assert any(line.startswith(f"error: {path}:") for line in errors), (path, err)
    assert f"{len(errors)} problem(s) found" in err


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("missing.toml", None, "not found"),
        ("broken.toml", "[forms.callback\n", "not valid TOML"),
    ],
    ids=["missing-file", "invalid-toml"],
)
def test_check_config_unreadable_file(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    text: str | None,
    fragment: str,
) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("HUB_CONFIG", str(path))
    assert main(["check-config"]) == 1
    out, err = capsys.readouterr()
    assert "configuration OK" not in out
    [line] = [line for line in err.splitlines() if line.startswith("error: ")]
    assert str(path) in line
    assert fragment in line


def test_the_example_configuration_is_valid() -> None:
    example = Path(__file__).resolve().parent.parent / "config" / "hub.example.toml"
    settings = load_settings(example, {})
    assert settings.forms["callback"].rate_limit == "30/minute"
    assert settings.default_region == "UZ"
