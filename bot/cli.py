"""Command line: ``salesbot run | check | simulate | digest | backup | cluster | objections | commands``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from bot.errors import ConfigError, SalesbotError
from storage.errors import DatabaseUnavailable, SchemaUpgradeFailed


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="salesbot", description="Consultative-selling assistant on Wechaty."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", default="config.toml", help="configuration file (default: config.toml)")
        return p

    run = with_config(sub.add_parser("run", help="start every configured account"))
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    run.add_argument("--host", help="address of the dashboard and API (default: web.host in config)")
    run.add_argument("--port", type=int, help="port of the dashboard and API (default: web.port in config)")
    run.add_argument(
        "--accounts",
        default="",
        metavar="A,B",
        help="PostgreSQL: run only these account ids (default: a fair share of the free ones)",
    )
    with_config(
        sub.add_parser("cluster", help="print the processes on the database, their leases and accounts")
    )
    with_config(sub.add_parser("check", help="validate the configuration, templates, model and database"))
    simulate = with_config(sub.add_parser("simulate", help="play a scripted conversation on a virtual clock"))
    simulate.add_argument("scenario", help="scenario TOML file (see examples/)")
    sub.add_parser("commands", help="print the rep command table (Markdown, as in the README)")
    digest = with_config(
        sub.add_parser("digest", help="print the supervisors' daily digest from the database")
    )
    digest.add_argument("--date", default="", help="YYYY-MM-DD (default: today, so far)")
    digest.add_argument("--supervisor", default="", help="only this supervisor (default: all)")
    backup = with_config(
        sub.add_parser("backup", help="copy the live SQLite database consistently (safe while running)")
    )
    backup.add_argument("file", help="the backup file to write")
    backup.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    objections = sub.add_parser(
        "objections", help="the reader of customer messages: classify, eval, audit, train"
    )
    tools = objections.add_subparsers(dest="tool", required=True)
    with_config(tools.add_parser("classify", help="classify one message per stdin line; JSON lines out"))
    evaluate = with_config(
        tools.add_parser(
            "eval", help="score the configured model on labelled files, or leave one vertical out"
        )
    )
    evaluate.add_argument(
        "file", nargs="*", help='JSONL lines {"text": ..., "objection": <label or null>, "signals": [...]}'
    )
    evaluate.add_argument(
        "--lovo", action="store_true", help="train without each vertical of the corpus and score on it"
    )
    evaluate.add_argument(
        "--lowo",
        action="store_true",
        help="train without each writer's file of a vertical another writer covers and score on it",
    )
    evaluate.add_argument(
        "--mistakes", type=int, default=0, metavar="N", help="also print N misread messages"
    )
    evaluate.add_argument(
        "--corpus", default="", help="corpus folder for --lovo/--lowo (default: the shipped corpus)"
    )
    audit = with_config(
        tools.add_parser("audit", help="list corpus lines whose label a held-out model doubts, for review")
    )
    audit.add_argument("--corpus", default="", help="corpus folder (default: the shipped corpus)")
    audit.add_argument("--top", type=int, default=30, metavar="N", help="print the N least likely labels")
    audit.add_argument("--out", default="", metavar="FILE", help="write every suspect line as JSONL")
    train = with_config(tools.add_parser("train", help="rebuild the model from the corpus (deterministic)"))
    train.add_argument("--corpus", default="", help="corpus folder (default: the shipped corpus)")
    train.add_argument(
        "--with-feedback",
        action="store_true",
        help="add the reps' corrections (/wrong, /label) from the database",
    )
    train.add_argument(
        "--out", default="", help="model folder (default: objections.model in config, else the shipped model)"
    )
    return parser


def _check(config_path: str) -> int:
    from bot.app import validate_setup
    from bot.config import load_config

    config = load_config(config_path)
    names = validate_setup(config)
    asyncio.run(_check_database(config.database_url()))
    accounts, templates = len(config.accounts), len(names)
    print(f"{config_path}: OK ({accounts} account(s), {templates} template(s) in {config.templates_path})")
    return 0


async def _check_database(url: str) -> None:
    from storage.db import Database

    db = Database(url)
    try:
        await db.preflight()
    finally:
        await db.close()


def _simulate(config_path: str, scenario_path: str) -> int:
    from bot.app import validate_setup
    from bot.config import load_config
    from bot.simulate import json_line, load_scenario, run_scenario

    config = load_config(config_path)
    validate_setup(config)
    scenario = load_scenario(Path(scenario_path), config)
    asyncio.run(run_scenario(scenario, config, lambda line: print(json_line(line), flush=True)))
    return 0


def _objections(args: argparse.Namespace) -> int:
    from bot.objections import tools

    if args.tool == "classify":
        return tools.classify(args.config, sys.stdin, sys.stdout)
    if args.tool == "eval":
        return tools.evaluate(
            args.config,
            args.file,
            lovo=args.lovo,
            lowo=args.lowo,
            mistakes=args.mistakes,
            corpus=args.corpus,
        )
    if args.tool == "audit":
        return tools.audit(corpus=args.corpus, top=args.top, out=args.out)
    return asyncio.run(
        tools.train(args.config, args.out, with_feedback=args.with_feedback, corpus=args.corpus)
    )


async def _digest(config_path: str, day_text: str, name: str) -> int:
    from datetime import date

    from bot.app import validate_setup
    from bot.clock import SystemClock
    from bot.config import load_config
    from bot.errors import SalesbotError
    from bot.objections.library import ObjectionLibrary
    from bot.services.digest import DigestService
    from bot.templates import TemplateLibrary
    from storage.db import Database

    config = load_config(config_path)
    validate_setup(config)
    clock = SystemClock()
    try:
        day = date.fromisoformat(day_text) if day_text else clock.now().astimezone(config.tz).date()
    except ValueError:
        raise SalesbotError(f"--date: expected YYYY-MM-DD, got {day_text!r}") from None
    supervisors = config.supervisors if not name else [s for s in config.supervisors if s.name == name]
    if not supervisors:
        raise SalesbotError(
            f"--supervisor: no supervisor named {name!r} in {config_path}"
            if name
            else f"{config_path}: no supervisors configured"
        )
    db = Database(config.database_url())
    try:
        await db.migrate()
        library = ObjectionLibrary.load(config.templates_path, [s.key for s in config.stages])
        service = DigestService(db, clock, config, TemplateLibrary(config.templates_path), library)
        for supervisor in supervisors:
            for part in await service.for_supervisor(supervisor, day, quiet="full"):  # show every line
                print(part, end="\n\n")
    finally:
        await db.close()
    return 0


def _backup(config_path: str, file: str, force: bool) -> int:
    from bot.config import load_config
    from storage.backup import BackupError, backup_sqlite, sqlite_file

    config = load_config(config_path)
    url = config.database_url()
    source = sqlite_file(url)
    if source is None:
        if url.startswith("sqlite"):
            raise SalesbotError(
                f"{config_path}: database.url is an in-memory database; there is nothing to back up"
            )
        raise SalesbotError(
            f"{config_path}: database.url is not SQLite; back up PostgreSQL with pg_dump -Fc "
            '(see "Backup and restore" in the README)'
        )
    try:
        result = backup_sqlite(source, Path(file), force=force)
    except BackupError as exc:
        raise SalesbotError(str(exc)) from None
    print(f"backup written: {result.path} ({result.size:,} bytes) from {source}")
    print(f"  customers: {result.customers}, pending messages: {result.pending}")
    if result.in_doubt:
        print(
            f"  sends under way: {result.in_doubt}, marked 'delivery unknown' in the backup "
            "(after a restore the rep is asked to check those chats; they are never sent again)"
        )
    return 0


async def _cluster(config_path: str) -> int:
    from bot.clock import SystemClock
    from bot.config import load_config
    from bot.services.cluster import describe
    from storage.db import Database

    config = load_config(config_path)
    db = Database(config.database_url())
    try:
        await db.migrate()
        accounts = [account.id for account in config.accounts]
        for line in await describe(db, SystemClock().now(), accounts, config.tz):
            print(line)
    finally:
        await db.close()
    return 0


def _accounts(config_path: str, text: str) -> list[str] | None:
    """``--accounts a,b``: the ids, each one configured; empty: None (a fair share)."""
    from bot.config import load_config

    if not text.strip():
        return None
    wanted = [part.strip() for part in text.split(",") if part.strip()]
    known = [account.id for account in load_config(config_path).accounts]
    unknown = [a for a in wanted if a not in known]
    if unknown:
        raise SalesbotError(
            f"--accounts: no account {', '.join(unknown)} in {config_path} (configured: {', '.join(known)})"
        )
    return wanted


def _run(
    config_path: str,
    verbose: bool,
    host: str | None = None,
    port: int | None = None,
    accounts_text: str = "",
) -> int:
    from bot.config import load_config
    from bot.runner import run

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:  # one line per event: not one per timer tick or migration step
        for noisy in ("apscheduler", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    config = load_config(config_path)
    accounts = _accounts(config_path, accounts_text)
    if accounts is not None and config.database_url().startswith("sqlite"):
        raise SalesbotError("--accounts needs PostgreSQL: on SQLite one process runs every account")
    asyncio.run(run(config, config_path, host, port, accounts))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command != "run":
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "check":
            return _check(args.config)
        if args.command == "commands":
            from bot.commands import REGISTRY
            from bot.commands.help import markdown_table

            print(markdown_table(REGISTRY))
            return 0
        if args.command == "digest":
            return asyncio.run(_digest(args.config, args.date, args.supervisor))
        if args.command == "backup":
            return _backup(args.config, args.file, args.force)
        if args.command == "objections":
            return _objections(args)
        if args.command == "simulate":
            return _simulate(args.config, args.scenario)
        if args.command == "cluster":
            return asyncio.run(_cluster(args.config))
        return _run(args.config, args.verbose, args.host, args.port, args.accounts)
    except SalesbotError as exc:
        from bot.redaction import redact

        message = redact(str(exc))
        where = getattr(args, "config", "")
        if isinstance(exc, ConfigError) and where and not message.startswith(where):
            message = f"{where}: {message}"  # a setting is named with its file
        print(f"error: {message}", file=sys.stderr)
        return 1
    except DatabaseUnavailable as exc:
        from bot.redaction import redact

        where = getattr(args, "config", "config.toml")
        print(f"error: database.url in {where}: {redact(str(exc))}", file=sys.stderr)
        return 1
    except SchemaUpgradeFailed as exc:  # not the URL's fault: the upgrade process was
        from bot.redaction import redact

        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
