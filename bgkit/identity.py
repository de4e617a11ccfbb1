"""Who is acting and on what source: the operator string and git facts.

Both are recorded in every archived run and every build sidecar, so a reviewer can
tell who did what, from which commit.
"""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GitInfo", "git_info", "operator"]


def operator(environ: Mapping[str, str] | None = None) -> str:
    """``user@host`` for a person; the CI job for a pipeline (when CI variables are set)."""
    env = os.environ if environ is None else environ
    if env.get("GITLAB_CI"):
        project = env.get("CI_PROJECT_PATH", "?")
        return f"gitlab-ci:{project}#job-{env.get('CI_JOB_ID', '?')}"
    if env.get("GITHUB_ACTIONS"):
        repo = env.get("GITHUB_REPOSITORY", "?")
        run = env.get("GITHUB_RUN_ID", "?")
        return f"github-actions:{repo}#run-{run}/{env.get('GITHUB_JOB', '?')}"
    if env.get("CI"):
        job = env.get("BUILD_TAG") or env.get("CI_JOB_ID") or env.get("BUILD_ID") or "?"
        return f"ci:{_user(env)}@{socket.gethostname()}#{job}"
    return f"{_user(env)}@{socket.gethostname()}"


def _user(env: Mapping[str, str]) -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return env.get("USER") or f"uid{os.getuid()}"


@dataclass(frozen=True, slots=True)
class GitInfo:
    """The commit a folder is at, and whether it differs from that commit."""

    commit: str | None
    dirty: bool

    @property
    def short(self) -> str | None:
        return self.commit[:7] if self.commit else None


def git_info(folder: Path) -> GitInfo:
    """Commit and dirty flag of ``folder`` (only changes below it count as dirty)."""
    commit = _git(folder, "rev-parse", "HEAD")
    if commit is None:
        return GitInfo(commit=None, dirty=False)
    status = _git(folder, "status", "--porcelain", "--untracked-files=normal", "--", ".")
    return GitInfo(commit=commit, dirty=bool(status))


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args],
            capture_output=True, text=True, timeout=30, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None
