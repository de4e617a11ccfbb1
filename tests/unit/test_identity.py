"""The operator string says who acted: a person, or which CI job."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from bgkit.identity import git_info, operator


def test_a_person_is_user_at_host() -> None:
    assert operator({}).endswith(f"@{socket.gethostname()}")


def test_gitlab_ci_names_the_project_and_job() -> None:
    env = {"CI": "true", "GITLAB_CI": "true", "CI_PROJECT_PATH": "ops/app", "CI_JOB_ID": "77"}
    assert operator(env) == "gitlab-ci:ops/app#job-77"


def test_github_actions_names_the_repository_run_and_job() -> None:
    env = {"CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "o/r",
           "GITHUB_RUN_ID": "9", "GITHUB_JOB": "deploy"}
    assert operator(env) == "github-actions:o/r#run-9/deploy"


def test_another_ci_is_marked_as_ci() -> None:
    assert operator({"CI": "true", "BUILD_TAG": "jenkins-app-4"}).startswith("ci:")
    assert operator({"CI": "true", "BUILD_TAG": "jenkins-app-4"}).endswith("#jenkins-app-4")


def test_git_info_reports_commit_and_dirty_below_the_folder(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "t@example.invalid")
    git("config", "user.name", "t")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.c").write_text("int a;\n")
    (tmp_path / "other.txt").write_text("x\n")
    git("add", ".")
    git("commit", "-qm", "init")
    clean = git_info(tmp_path / "src")
    assert clean.commit is not None and len(clean.commit) == 40 and not clean.dirty
    (tmp_path / "other.txt").write_text("changed\n")
    assert not git_info(tmp_path / "src").dirty  # a change outside the folder does not count
    (tmp_path / "src" / "a.c").write_text("int b;\n")
    assert git_info(tmp_path / "src").dirty


def test_outside_git_there_is_no_commit(tmp_path: Path) -> None:
    info = git_info(tmp_path)
    assert info.commit is None and info.short is None
