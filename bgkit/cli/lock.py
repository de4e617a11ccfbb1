"""``bgkit lock status | release``: the deployment lease shared by operators and CI (a
file, or an object in S3-compatible storage: :func:`bgkit.lock.store_for`)."""

from __future__ import annotations

from pathlib import Path

import click

from bgkit.cli.render import config_option, escape, out
from bgkit.errors import UsageError


@click.group("lock")
def lock_group() -> None:
    """The deployment lock shared by operators and CI."""


@lock_group.command("status")
@config_option
def lock_status(config_path: Path | None) -> None:
    """Who holds the lock, why, and until when."""
    from bgkit.config import load_config
    from bgkit.lock import read_lock, store_for

    store = store_for(load_config(config_path))
    info = read_lock(store)
    if info is None:
        out.print(f"free: nobody holds {escape(store.location)}")
        return
    stale = info.stale()
    out.print(f"{escape(store.location)}: {escape(info.describe())}")
    if info.renewed_at:
        out.print(f"  renewed every {info.ttl_s / 3:g} s while held; TTL {info.ttl_s:g} s")
    unfinished = info.unfinished()
    if stale and unfinished:
        out.print(f"  stale: {escape(stale)}; its holder left {escape(unfinished)} "
                  "unfinished: only `bgkit switch` or `bgkit rollback` take it over (they "
                  "finish or undo it)")
    elif stale:
        out.print(f"  stale: {escape(stale)} (the next deploy or switch takes it over)")
    if info.took_over:
        out.print(f"  it took over a stale lock of {escape(str(info.took_over.get('owner')))}"
                  f" ({escape(str(info.took_over.get('reason')))})")


@lock_group.command("release")
@config_option
@click.option("--force", is_flag=True, help="Release even if this process does not hold it.")
def lock_release(config_path: Path | None, force: bool) -> None:
    """Release the lock (with --force: whoever holds it)."""
    from bgkit.config import load_config
    from bgkit.lock import force_release, read_lock, store_for

    store = store_for(load_config(config_path))
    info = read_lock(store)
    if info is None:
        out.print("the lock was free")
        return
    if not force and info.stale() is None:
        raise UsageError(f"the lock is {info.describe()}; pass --force to release it anyway")
    unfinished = info.unfinished()
    if not force and unfinished:
        raise UsageError(f"the lock was left in the middle of {unfinished}; run `bgkit switch` "
                         "or `bgkit rollback` to finish or undo it, or pass --force to drop "
                         "that record")
    force_release(store)
    out.print(f"released the lock {escape(store.location)}, {escape(info.describe())}")
