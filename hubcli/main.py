"""The `hub` command: up, web, worker, migrate, user create, bench, check-config."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from hub.log import configure_logging
from hub.settings import ConfigError, Settings, load_settings


def _settings() -> Settings:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


def cmd_check_config(_args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) found", file=sys.stderr)
        return 1
    from hub.channels.registry import build_channels, build_forms

    print(f"config file: {settings.config_file or '(none: defaults and HUB_* variables)'}")
    print(f"database:    {settings.database_url.split('@')[-1]}")
    print(f"redis:       {settings.redis_url.split('@')[-1] if settings.redis_url else 'embedded'}")
    print(f"public url:  {settings.public_url or '(not set: providers cannot reach this hub)'}")
    for channel in build_channels(settings).values():
        print(f"channel {channel.name}: {channel.describe()}")
    for form in build_forms(settings).values():
        print(form.describe())
    print("configuration OK")
    return 0


def cmd_migrate(_args: argparse.Namespace) -> int:
    from hub.migrate import upgrade

    settings = _settings()
    upgrade(settings.database_url)
    print(f"database is up to date: {settings.database_url.split('@')[-1]}")
    return 0


def cmd_user_create(args: argparse.Namespace) -> int:
    from hub.auth.users import UserError, create_user
    from hub.db import Database
    from hubcli.serve import fail, migrate_if_empty_sqlite

    settings = _settings()
    migrate_if_empty_sqlite(settings)

    async def create() -> str:
        db = Database(settings.database_url)
        try:
            async with db.write() as session:
                user = await create_user(session, args.email, args.password, args.role, args.name)
                return f"created {user.role} {user.email} (id {user.id})"
        finally:
            await db.dispose()

    try:
        print(asyncio.run(create()))
    except UserError as exc:
        return fail(str(exc))
    return 0


def cmd_user_deactivate(args: argparse.Namespace) -> int:
    from hubcli.users import deactivate

    return deactivate(_settings(), args.email, args.successor)


def cmd_import(args: argparse.Namespace) -> int:
    from hubcli.importer import run_import
    from hubcli.serve import migrate_if_empty_sqlite

    settings = _settings()
    migrate_if_empty_sqlite(settings)
    return run_import(settings, args)


def cmd_up(args: argparse.Namespace) -> int:
    from hubcli.serve import up

    return up(_settings(), demo=args.demo)


def cmd_web(_args: argparse.Namespace) -> int:
    from hubcli.serve import migrate_if_empty_sqlite, require_redis, serve, url_of

    settings = _settings()
    migrate_if_empty_sqlite(settings)
    require_redis(settings)
    asyncio.run(
        serve(settings, web_server=True, worker=False, banner=f"hub web at {url_of(settings)}")
    )
    return 0


def cmd_worker(_args: argparse.Namespace) -> int:
    from hubcli.serve import require_redis, serve

    settings = _settings()
    require_redis(settings)
    asyncio.run(serve(settings, web_server=False, worker=True, banner="hub worker running"))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from hubcli.bench import run_bench

    return run_bench(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hub", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser("up", help="web + worker + embedded Redis on SQLite: the one-laptop hub")
    up.add_argument("--demo", action="store_true", help="seed a demo admin, form and conversations")
    up.set_defaults(func=cmd_up)
    sub.add_parser("web", help="the web server only").set_defaults(func=cmd_web)
    sub.add_parser("worker", help="the arq worker only").set_defaults(func=cmd_worker)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    sub.add_parser("check-config", help="validate the configuration").set_defaults(
        func=cmd_check_config
    )
    user = sub.add_parser("user", help="manage users")
    user_sub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    create = user_sub.add_parser("create", help="create a user")
    create.add_argument("--email", required=True)
    create.add_argument("--password", required=True)
    create.add_argument("--role", required=True, choices=["operator", "manager", "admin"])
    create.add_argument("--name", default="")
    create.set_defaults(func=cmd_user_create)
    deactivate = user_sub.add_parser(
        "deactivate",
        help="deactivate a user: open conversations, leads and reminders go to a successor",
    )
    deactivate.add_argument("--email", required=True)
    deactivate.add_argument(
        "--successor", default=None, metavar="EMAIL", help="who takes over (default: the manager)"
    )
    deactivate.set_defaults(func=cmd_user_deactivate)
    from hubcli.importer import add_parser as add_import

    add_import(sub)
    sub.choices["import"].set_defaults(func=cmd_import)
    bench = sub.add_parser("bench", help="load-test the form pipeline against a bare handler")
    from hubcli.bench import add_arguments

    add_arguments(bench)
    bench.set_defaults(func=cmd_bench)
    from hubcli.telegram import add_parser as add_telegram

    add_telegram(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"hub: configuration error: {problem}", file=sys.stderr)
        print("hub: run `hub check-config` for the full report", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from hubcli.serve import StartupError

        if isinstance(exc, StartupError):
            print(f"hub: {exc}", file=sys.stderr)
            return 2
        raise
    return code


if __name__ == "__main__":
    sys.exit(main())
