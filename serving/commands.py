"""``wildscan serve`` and ``wildscan keys``: run the API, manage its API keys.

Registration only builds parsers; FastAPI, uvicorn and the model load inside the commands.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vision.errors import WildscanError


def register_serve(sub: argparse._SubParsersAction) -> None:
    """Add ``wildscan serve``."""
    p = sub.add_parser(
        "serve",
        help="serve the officers' web page and the classify API",
        description="Serve the web page at / and the API at /v1 (docs at /docs). Settings come from "
        "WILDSCAN_* environment variables (see serving/settings.py); the options below override them.",
    )
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8000)")
    p.add_argument("--model", default=None, help="bundle name or path (default: the shipped model)")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default 1)")
    p.add_argument(
        "--allow-anonymous",
        action="store_true",
        default=None,
        help="keyless local demo mode (loopback only); by default every request needs an API key",
    )
    p.set_defaults(func=run_serve)


def register_keys(sub: argparse._SubParsersAction) -> None:
    """Add ``wildscan keys add|list|revoke``."""
    p = sub.add_parser(
        "keys",
        help="create, list and revoke API keys",
        description="Manage the API keys stored (hashed) in the audit database (WILDSCAN_DB).",
    )
    actions = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="create a key and print it (once)")
    add.add_argument("name", help="who the key is for, e.g. 'customs-hamburg'")
    add.add_argument("--admin", action="store_true", help="may read every key's results (default: own only)")
    actions.add_parser("list", help="list key names, roles and states (never the keys)")
    revoke = actions.add_parser("revoke", help="revoke a key by name")
    revoke.add_argument("name")
    p.set_defaults(func=run_keys)


def register_feedback(sub: argparse._SubParsersAction) -> None:
    """Add ``wildscan feedback export``."""
    p = sub.add_parser(
        "feedback",
        help="export officers' verdicts on results as labelled data",
        description="Officers mark results correct, or wrong with the right category (web page or "
        "POST /v1/results/{id}/feedback). 'export' writes the latest verdict per result to OUT/feedback.csv, "
        "with the photos (OUT/photos/) where the server kept evidence copies; the training pipeline reads the "
        "folder as labelled data (training.data.load_feedback).",
    )
    actions = p.add_subparsers(dest="feedback_command", metavar="ACTION", required=True)
    export = actions.add_parser("export", help="write OUT/feedback.csv (and OUT/photos/)")
    export.add_argument("out", type=Path, help="folder to write")
    p.set_defaults(func=run_feedback)


def run_serve(args: argparse.Namespace) -> int:
    """Load settings, check them, and run uvicorn until interrupted."""
    import uvicorn

    from .app import create_app, preflight
    from .settings import Settings

    settings = Settings.from_env(
        host=args.host, port=args.port, model=args.model, threads=args.threads, allow_anonymous=args.allow_anonymous
    )
    preflight(settings)
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, log_level="info", timeout_graceful_shutdown=10
    )
    return 0


def run_keys(args: argparse.Namespace) -> int:
    """Add, list or revoke a key in the store named by the settings."""
    from .settings import Settings
    from .store import Store

    settings = Settings.from_env()
    with Store(settings.db_path) as store:
        if args.keys_command == "add":
            key = store.add_key(args.name, role="admin" if args.admin else "user")
            print(key)
            print(f"key {args.name!r} created in {settings.db_path}; it is shown only this once", file=sys.stderr)
        elif args.keys_command == "list":
            for row in store.list_keys():
                state = f"revoked {row['revoked']}" if row["revoked"] else "active"
                print(f"{row['name']}\t{row['role']}\t{row['created']}\t{state}")
        else:
            store.revoke_key(args.name)
            print(f"key {args.name!r} revoked", file=sys.stderr)
    return 0


def run_feedback(args: argparse.Namespace) -> int:
    """Export the feedback in the audit database named by the settings."""
    from .feedback import export_feedback
    from .settings import Settings
    from .store import Store

    settings = Settings.from_env()
    if not settings.db_path.exists():
        where = f"no audit database at {settings.db_path} (set WILDSCAN_DB or WILDSCAN_DATA_DIR)"
        raise WildscanError(where, "bad_database")
    with Store(settings.db_path) as store:
        done = export_feedback(store, args.out, settings.evidence_dir)
    print(
        f"{done.rows} results with feedback ({done.corrected} corrected), {done.photos} photos "
        f"from {settings.db_path} -> {done.manifest}",
        file=sys.stderr,
    )
    if done.rows > done.photos:
        print(
            f"{done.rows - done.photos} rows have no photo: the server kept no evidence copy "
            "(WILDSCAN_KEEP_EVIDENCE=1 keeps them); those rows give hashes and labels only",
            file=sys.stderr,
        )
    return 0
