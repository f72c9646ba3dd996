"""The deployment artefacts, checked offline: scripts/lint_deploy.sh, the drain timing the manifests
promise, the settings file they ship, and the image's build context (no Docker engine here)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from serving import ROOT

LINT = ROOT / "scripts" / "lint_deploy.sh"
SCHEMA = ROOT / "deploy" / "schemas" / "compose-spec.json"
CONFIG = ROOT / "deploy" / "components" / "tokvec-config" / "tokvec.toml"


def lint(root: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["bash", str(root / "scripts" / "lint_deploy.sh")],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, COMPOSE_SCHEMA=str(SCHEMA), **env),
    )
    if done.returncode == 2:
        # The tools are PyPI packages (the `deploy` extra); CI installs them, so there it is a failure.
        reason = "lint tools not installed (pip install -e '.[deploy]'): " + done.stderr.strip()
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return done


@pytest.mark.timeout(120)
def test_lint_deploy_passes() -> None:
    done = lint()
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "== hadolint Dockerfile" in out and "4 services, 0 problems" in out
    for overlay in ("base", "overlays/cpu", "overlays/gpu", "overlays/native-sidecar"):
        assert f"kubectl kustomize deploy/{overlay}" in out
        assert f"kubernetes-validate --strict -k 1.30.0 (deploy/{overlay})" in out
    assert "== buf lint (proto/)" in out and "all checks passed" in out


@pytest.mark.timeout(120)
def test_lint_catches_a_breaking_proto_change_against_the_release_tag(tmp_path: Path) -> None:
    """In a scratch repository tagged v0.1.0: unchanged, buf breaking passes; a renumbered field fails."""
    for name in ("Dockerfile", "docker-compose.yml", "buf.yaml", "scripts/lint_deploy.sh"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    for folder in ("proto", "deploy"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "release"], ["tag", "v0.1.0"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    path = os.environ["PATH"]
    venv_bin = str(ROOT / ".venv" / "bin")
    done = lint(tmp_path, PATH=f"{venv_bin}:{path}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "buf breaking --against '.git#tag=v0.1.0'" in done.stdout

    proto = tmp_path / "proto" / "tokvec" / "v1" / "tokvec.proto"
    proto.write_text(proto.read_text().replace("string text = 4;", "string text = 40;"))
    done = lint(tmp_path, PATH=f"{venv_bin}:{path}")
    assert done.returncode == 1
    assert (
        'field "4" with name "text"' in done.stdout + done.stderr and "FAIL: buf breaking against v0.1.0" in done.stderr
    )


def test_compose_schema_check_is_not_vacuous() -> None:
    """The schema that lint_deploy.sh applies rejects a misspelt key and a bad GPU reservation."""
    jsonschema = pytest.importorskip("jsonschema")
    yaml = pytest.importorskip("yaml")
    import json

    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert list(validator.iter_errors(compose)) == []
    reservation = compose["services"]["tokvec"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert reservation["capabilities"] == ["gpu"]
    compose["services"]["tokvec"]["healthchek"] = compose["services"]["tokvec"].pop("healthcheck")
    reservation["capabilities"] = "gpu"
    assert len(list(validator.iter_errors(compose))) == 2


def test_drain_fits_in_the_termination_grace_period() -> None:
    """preStop sleep + drain_s + grace_s (the shipped settings file) < terminationGracePeriodSeconds."""
    yaml = pytest.importorskip("yaml")
    from tokvec_server.settings import load_settings

    settings = load_settings(CONFIG)  # the server accepts the file the manifests mount
    deployment = yaml.safe_load((ROOT / "deploy" / "base" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop + settings.drain_s + settings.grace_s < pod["terminationGracePeriodSeconds"]
    assert (
        settings.metrics_address.endswith(":9464")
        and "9464" in (deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"])
    )
    assert {p["grpc"].get("service", "") for p in (container["readinessProbe"], container["livenessProbe"])} == {
        "tokvec.v1.EmbedService",
        "",
    }
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1

    sidecar_pod = yaml.safe_load((ROOT / "deploy" / "overlays" / "native-sidecar" / "pipeline.yaml").read_text())[
        "spec"
    ]["template"]["spec"]
    (sidecar,) = sidecar_pod["initContainers"]
    assert sidecar["restartPolicy"] == "Always" and "startupProbe" in sidecar
    assert settings.drain_s + settings.grace_s < sidecar_pod["terminationGracePeriodSeconds"]


def _dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    excluded = False
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = os.path.normpath(raw.lstrip("!").strip("/"))
        regex = (
            re.escape(pattern)
            .replace(r"\*\*/", "(.*/)?")
            .replace(r"\*\*", ".*")
            .replace(r"\*", "[^/]*")
            .replace(r"\?", "[^/]")
        )
        regex = regex.replace(r"\[", "[").replace(r"\]", "]")  # character classes such as *.py[co]
        if any(re.fullmatch(regex, c) for c in candidates):
            excluded = not negate
    return excluded


@pytest.mark.timeout(120)
def test_image_context_holds_what_the_dockerfile_copies_and_builds_the_package(tmp_path: Path) -> None:
    """The build context after .dockerignore has every COPY source, and `pip` builds tokvec from it."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard"], capture_output=True, text=True, check=True
    )
    context = sorted(
        p for p in listed.stdout.splitlines() if (ROOT / p).is_file() and not _dockerignore_excludes(patterns, p)
    )
    assert not any(p.startswith(("tests/", "bench/", ".venv", "proto/")) for p in context)

    sources = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            *srcs, _dest = line.split()[1:]
            sources += [s for s in srcs if not s.startswith("--")]
    assert sources
    for source in sources:
        prefix = source.rstrip("*").rstrip("/")
        found = [
            p
            for p in context
            if p == prefix or p.startswith(prefix + "/") or (source.endswith("*") and p.startswith(prefix))
        ]
        assert found or source.endswith("*"), f"COPY {source}: not in the build context"

    for p in context:
        (tmp_path / "ctx" / p).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / p, tmp_path / "ctx" / p)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(tmp_path / "ctx"),
        ],
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp_path / "dist").glob("tokvec-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in (
        "tokvec/__init__.py",
        "tokvec/v1/tokvec_pb2.py",
        "tokvec_server/rpc/server.py",
        "tokvec_server/runners/torch_runner.py",
    ):
        assert module in names
