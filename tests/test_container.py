"""The container files: ``Dockerfile``, ``.dockerignore``, the Kubernetes CronJob under
``deploy/kubernetes/`` and the CI workflow ``.github/workflows/ci.yml``.

Nothing is built or deployed here. Each file is parsed and checked for what makes it work
unattended: the image runs ``revbot daily`` as a fixed non-root user, with runtime dependencies
from uv.lock only and DATA_DIR on a volume. The CronJob runs that image with the same user,
keeps DATA_DIR on a claim, takes secrets only from Secrets and never retries what cannot
succeed. CI runs ``make lint`` and ``make test`` on every supported Python.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from bot.deadline import DEFAULT_RUN_CEILING
from bot.errors import EXIT_CONFIG, EXIT_OK, EXIT_TEMPORARY, EXIT_USAGE
from tests.conftest import REVBOT_VARS
from tests.test_deploy import CRON_FIELD

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
KUBERNETES = REPO / "deploy" / "kubernetes"
CRONJOB_FILE = KUBERNETES / "revbot-cronjob.yaml"
SECRETS_EXAMPLE = KUBERNETES / "revbot-secrets.yaml.example"
CI = REPO / ".github" / "workflows" / "ci.yml"
PYPROJECT: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))

SECRET_VARS = ("STRIPE_SECRET_KEY", "RESEND_API_KEY", "SLACK_WEBHOOK_URL")
# Shaped like a real credential: a Stripe or Resend key, a Slack webhook, a PEM private key.
KEY_SHAPED = re.compile(
    r"\b(sk|rk)_(live|test)_[A-Za-z0-9]{6,}|\bre_[A-Za-z0-9]{8,}"
    r"|hooks\.slack\.com/services/\w|-----BEGIN [A-Z ]*PRIVATE KEY-----"
)
CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
SHELL_SEPARATORS = {"&&", "||", ";", "|"}


# -- the Dockerfile, parsed ---------------------------------------------------------------------


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (KEYWORD, arguments)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"no {keyword} in the stage FROM {self.image}"
        return found[-1]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for args in self.all("ENV"):
            words = shlex.split(args)
            if "=" in words[0]:
                values.update(word.split("=", 1) for word in words)
            else:  # the legacy form, `ENV NAME value with spaces`
                values[words[0]] = args.split(None, 1)[1]
        return values

    def commands(self) -> list[list[str]]:
        """Each simple command of each RUN, split in words (`a && b` gives two)."""
        found: list[list[str]] = []
        for args in self.all("RUN"):
            current: list[str] = []
            for word in shlex.split(args):
                if word in SHELL_SEPARATORS:
                    found.append(current)
                    current = []
                else:
                    current.append(word)
            found.append(current)
        return [words for words in found if words]


def parse_dockerfile(text: str) -> list[Stage]:
    """The stages of a Dockerfile, with continuation lines joined and comments dropped."""
    stages: list[Stage] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue  # Docker drops these, even in the middle of a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, args = (pending + stripped).partition(" ")
        pending = ""
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            words = [w for w in words if not w.startswith("--platform")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image=words[0], name=name))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, args))
    assert not pending, "the Dockerfile ends in a continuation line"
    return stages


def exec_form(args: str) -> list[str]:
    value = json.loads(args)  # the JSON (exec) form: no shell between Docker and revbot
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def copy_sources(args: str) -> tuple[dict[str, str], list[str]]:
    """(the --flags, the sources) of a COPY or ADD."""
    words = exec_form(args) if args.startswith("[") else shlex.split(args)
    flags = dict(w[2:].partition("=")[::2] for w in words if w.startswith("--"))
    paths = [w for w in words if not w.startswith("--")]
    return flags, paths[:-1]


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text("utf-8"))


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


def image_user(final: Stage) -> tuple[int, int | None]:
    """The final stage's USER, as (uid, gid): numeric, so that Kubernetes can check runAsNonRoot."""
    user = final.last("USER")
    assert re.fullmatch(r"\d+(:\d+)?", user), f"USER {user} is not numeric"
    uid, _, gid = user.partition(":")
    return int(uid), int(gid) if gid else None


def image_data_dir(final: Stage) -> str:
    return final.env()["DATA_DIR"]


# -- the Dockerfile -----------------------------------------------------------------------------


def test_the_image_is_built_on_slim_python_of_the_lowest_supported_version(
    stages: list[Stage],
) -> None:
    lowest = re.fullmatch(r">=\s*(\d+\.\d+)", PYPROJECT["project"]["requires-python"])
    assert lowest, PYPROJECT["project"]["requires-python"]
    names = set()
    for stage in stages:
        if stage.image not in names:  # `FROM build` reuses an earlier stage
            base = re.fullmatch(r"python:(\d+\.\d+)-slim(@sha256:[0-9a-f]{64})?", stage.image)
            assert base, stage.image
            assert base.group(1) == lowest.group(1), stage.image
        if stage.name:
            names.add(stage.name)
    labels = " ".join(stages[-1].all("LABEL"))
    assert "org.opencontainers.image.source=" in labels
    assert "org.opencontainers.image.licenses=" in labels


def test_the_image_runs_revbot_daily_as_a_fixed_non_root_user(final: Stage) -> None:
    uid, gid = image_user(final)
    assert uid != 0 and gid != 0
    assert exec_form(final.last("ENTRYPOINT")) == ["revbot"]
    assert exec_form(final.last("CMD")) == ["daily"]
    # Python as PID 1 ignores SIGTERM; SIGINT makes revbot stop cleanly (exit 130).
    assert final.last("STOPSIGNAL") in ("SIGINT", "2")


def test_data_dir_is_the_volume_and_the_working_directory(final: Stage) -> None:
    env = final.env()
    data_dir = image_data_dir(final)
    assert posixpath.isabs(data_dir)
    volume = final.last("VOLUME")
    volumes = exec_form(volume) if volume.startswith("[") else volume.split()
    assert volumes == [data_dir]
    # revbot reads .env from its working directory: none is in the image, and the settings
    # come from the environment.
    assert final.last("WORKDIR") == data_dir
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    # Created in the image and owned by the user, so a new named volume starts out writable.
    uid, _gid = image_user(final)
    owned = [
        words
        for words in final.commands()
        if data_dir in words
        and (
            (words[0] == "install" and "-o" in words and words[words.index("-o") + 1] == str(uid))
            or (words[0] == "chown" and words[-2].split(":")[0] == str(uid))
        )
    ]
    assert owned, final.commands()
    # The VOLUME comes after: Docker discards changes made to a volume's path after it.
    keywords = [kw for kw, _ in final.instructions]
    last_run = max(i for i, kw in enumerate(keywords) if kw == "RUN")
    assert last_run < keywords.index("VOLUME")


def test_the_runtime_stage_runs_the_environment_built_from_the_lock(
    stages: list[Stage], final: Stage
) -> None:
    copied = [copy_sources(args) for args in final.all("COPY")]
    from_build = [(flags, src) for flags, src in copied if "from" in flags]
    assert len(from_build) == 1, copied  # the virtual environment, and nothing else
    (flags, (venv,)) = from_build[0]
    builder = next(s for s in stages if s.name == flags["from"])
    # uv built that environment in that directory, and revbot is found on the PATH there.
    assert builder.env().get("UV_PROJECT_ENVIRONMENT", venv) == venv
    assert final.env()["PATH"].split(":")[0] == f"{venv}/bin"


def test_dependencies_come_from_the_lock_without_test_or_dev_extras(stages: list[Stage]) -> None:
    commands = [words for stage in stages for words in stage.commands()]
    uv = [words for words in commands if words[0] == "uv"]
    syncs = [words for words in uv if words[1] == "sync"]
    exports = [words for words in uv if words[1] == "export"]
    pips = [words for words in commands if "pip" in words[:3] and "install" in words]
    assert syncs or exports, commands
    for words in syncs + exports:
        # Exactly the lock's versions and hashes, never a fresh resolution.
        assert "--frozen" in words or "--locked" in words, words
        assert "--no-dev" in words, words
        for flag in ("--extra", "--all-extras", "--group", "--all-groups", "--dev"):
            assert flag not in words, words
    for words in pips:
        # pip installs uv itself (pinned), or the exported lock (with hashes), or the wheel.
        wanted = [w for w in words[words.index("install") + 1 :] if not w.startswith("-")]
        assert (
            all(re.fullmatch(r"uv==\d+(\.\d+)+", w) for w in wanted)
            or "--require-hashes" in words
            or ("--no-deps" in words and all(w.endswith(".whl") for w in wanted))
        ), words
    assert not [w for words in commands for w in words if re.search(r"\[(test|dev)\b", w)]
    # revbot itself is installed as a built wheel, not editable: the templates are inside it.
    assert not [words for words in uv + pips if "-e" in words or "--editable" in words]
    if syncs:
        assert "--no-editable" in syncs[-1] and "--no-install-project" not in syncs[-1]


def test_uv_is_pinned_to_the_makefiles_version(stages: list[Stage]) -> None:
    words = [w for stage in stages for cmd in stage.commands() for w in cmd]
    pins = {w.split("==")[1] for w in words if re.fullmatch(r"uv==\d+(\.\d+)+", w)}
    assert len(pins) == 1, pins
    text = (REPO / "Makefile").read_text("utf-8")
    makefile = set(re.findall(r"\buv==(\d+(?:\.\d+)+)", text))
    makefile |= set(re.findall(r"^UV_VERSION\s*[:?]?=\s*(\d+(?:\.\d+)+)\s*$", text, re.MULTILINE))
    if not makefile:
        pytest.skip("the Makefile does not pin uv")
    assert pins == makefile  # the image and `make` read uv.lock the same way


# -- the build context --------------------------------------------------------------------------


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(excludes?, pattern) per line of .dockerignore, as Docker reads them."""
    rules = []
    for line in (REPO / ".dockerignore").read_text("utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        excludes = not line.startswith("!")
        pattern = posixpath.normpath(line.lstrip("!").strip()).lstrip("/")
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex, i = regex + pattern[i : end + 1], end + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((excludes, re.compile(regex)))
    return rules


def ignored(path: str) -> bool:
    """Whether Docker leaves ``path`` out of the build context: the last matching line wins, and
    a line that matches a folder matches everything in it."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    verdict = False
    for excludes, regex in dockerignore_rules():
        if any(regex.fullmatch(p) for p in prefixes):
            verdict = excludes
    return verdict


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        ".env.local",
        "bot/.env",
        "credentials.json",
        "config/credentials.json",
        "revbot-data/state.sqlite",
        ".venv/bin/python",
        ".venv-lowest/bin/python",
        ".git/config",
        "bot/__pycache__/cli.cpython-311.pyc",
        ".mypy_cache/3.11/bot/cli.meta.json",
    ],
)
def test_the_build_context_leaves_out_secrets_state_and_caches(path: str) -> None:
    assert ignored(path)


def test_every_file_the_image_copies_is_in_the_build_context(stages: list[Stage]) -> None:
    copied: list[str] = []
    for stage in stages:
        for args in stage.all("COPY") + stage.all("ADD"):
            flags, sources = copy_sources(args)
            if "from" not in flags:
                copied += [posixpath.normpath(s) for s in sources]
    assert copied
    for source in copied:
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
        assert not ignored(source), f"COPY {source}: left out by .dockerignore"
    # What building the wheel reads: the lock, pyproject.toml, the readme, the license files
    # and the folder of every package (bot.templates lives in templates/).
    setuptools = PYPROJECT["tool"]["setuptools"]
    package_dirs = setuptools.get("package-dir", {})
    needed = {"pyproject.toml", "uv.lock", PYPROJECT["project"]["readme"]}
    needed |= set(PYPROJECT["project"].get("license-files", []))
    needed |= {
        package_dirs.get(package, package.replace(".", "/")) for package in setuptools["packages"]
    }
    for path in needed:
        assert any(path == c or path.startswith(c + "/") for c in copied), (path, copied)


# -- the Kubernetes CronJob ---------------------------------------------------------------------


def manifests(path: Path) -> list[dict[str, Any]]:
    docs = [doc for doc in yaml.safe_load_all(path.read_text("utf-8")) if doc is not None]
    assert all(isinstance(doc, dict) and "kind" in doc for doc in docs), path
    return docs


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


@pytest.fixture(scope="module")
def cronjob() -> dict[str, Any]:
    return only(manifests(CRONJOB_FILE), "CronJob")


@pytest.fixture(scope="module")
def pod(cronjob: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def container(pod: dict[str, Any]) -> dict[str, Any]:
    (found,) = pod["containers"]
    assert not pod.get("initContainers")
    c: dict[str, Any] = found
    return c


def env_vars(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    entries = {entry["name"]: entry for entry in container.get("env", [])}
    assert len(entries) == len(container.get("env", [])), "a variable set twice"
    return entries


def config_map(container: dict[str, Any]) -> dict[str, str]:
    """The data of the ConfigMaps the container takes its environment from."""
    data: dict[str, str] = {}
    docs = manifests(CRONJOB_FILE)
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, source  # secrets are named one by one
        cm = next(
            d
            for d in docs
            if d["kind"] == "ConfigMap" and d["metadata"]["name"] == source["configMapRef"]["name"]
        )
        data.update(cm.get("data", {}))
    return data


def mounts(container: dict[str, Any], pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """mountPath -> (the mount, with its volume under "volume")."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    return {m["mountPath"]: {**m, "volume": volumes[m["name"]]} for m in container["volumeMounts"]}


def test_the_cronjob_runs_revbot_daily_every_morning(
    cronjob: dict[str, Any], container: dict[str, Any], final: Stage
) -> None:
    assert cronjob["apiVersion"] == "batch/v1"
    spec = cronjob["spec"]
    fields = spec["schedule"].split()
    assert len(fields) == 5, spec["schedule"]
    for value, (low, high) in zip(fields, CRON_RANGES, strict=True):
        assert re.fullmatch(CRON_FIELD, value), spec["schedule"]
        assert all(low <= int(n) <= high for n in re.findall(r"\d+", value.split("/")[0]))
    assert fields[2:] == ["*", "*", "*"]  # every day
    ZoneInfo(spec["timeZone"])  # a real zone, not the controller's local time
    assert spec["concurrencyPolicy"] == "Forbid"
    assert isinstance(spec["startingDeadlineSeconds"], int) and spec["startingDeadlineSeconds"] > 0
    assert spec["successfulJobsHistoryLimit"] >= 1 and spec["failedJobsHistoryLimit"] >= 1
    # What the container runs: command replaces the image's ENTRYPOINT, args its CMD.
    entrypoint = container.get("command", exec_form(final.last("ENTRYPOINT")))
    default_args = [] if "command" in container else exec_form(final.last("CMD"))
    assert entrypoint + container.get("args", default_args) == ["revbot", "daily"]
    image = container["image"]
    assert re.fullmatch(r"[^:@\s]+(:[\w.-]+|@sha256:[0-9a-f]{64})", image.rsplit("/", 1)[-1])
    assert not image.endswith(":latest")
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), kind


def test_the_job_retries_temporary_failures_and_stops_on_configuration_errors(
    cronjob: dict[str, Any], pod: dict[str, Any]
) -> None:
    job = cronjob["spec"]["jobTemplate"]["spec"]
    assert 1 <= job["backoffLimit"] <= 3
    # A normal run may take up to revbot's own ceiling; the Job must not kill it before.
    assert job["activeDeadlineSeconds"] > DEFAULT_RUN_CEILING
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    fail_now: set[int] = set()
    if "podFailurePolicy" in job:
        assert pod["restartPolicy"] == "Never"  # Kubernetes requires it
        for rule in job["podFailurePolicy"]["rules"]:
            codes = rule.get("onExitCodes")
            if rule["action"] == "FailJob" and codes:
                assert codes["operator"] == "In"
                fail_now |= set(codes["values"])
    # 75 is "try again later": a retry is safe (transactions, sends recorded, Idempotency-Key).
    assert EXIT_TEMPORARY not in fail_now and EXIT_OK not in fail_now
    # A setting to fix, or bad usage, fails the same way every time.
    assert {EXIT_CONFIG, EXIT_USAGE} <= fail_now


def test_the_pod_runs_as_the_images_user_with_a_read_only_root(
    pod: dict[str, Any], container: dict[str, Any], final: Stage
) -> None:
    security = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    uid, gid = image_user(final)
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == uid
    if gid is not None:
        assert security.get("runAsGroup", gid) == gid
    assert pod["securityContext"]["fsGroup"] == security.get("runAsGroup", gid)
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert "ALL" in security["capabilities"]["drop"]
    assert pod["automountServiceAccountToken"] is False


def test_data_dir_is_on_a_persistent_volume_claim_kept_apart(
    pod: dict[str, Any], container: dict[str, Any], final: Stage
) -> None:
    env = env_vars(container)
    data_dir = env["DATA_DIR"]["value"] if "DATA_DIR" in env else image_data_dir(final)
    assert data_dir == image_data_dir(final)
    claim = mounts(container, pod)[data_dir]["volume"]["persistentVolumeClaim"]["claimName"]
    # The claim is defined next to the CronJob, in a file of its own: `kubectl delete -f
    # revbot-cronjob.yaml` must never delete the ledger.
    claims = {
        path.name: doc
        for path in sorted(KUBERNETES.glob("*.yaml"))
        for doc in manifests(path)
        if doc["kind"] == "PersistentVolumeClaim" and doc["metadata"]["name"] == claim
    }
    assert len(claims) == 1, claims
    ((file, pvc),) = claims.items()
    assert file != CRONJOB_FILE.name
    assert pvc["spec"]["resources"]["requests"]["storage"]
    assert pvc["spec"]["accessModes"]


def test_only_data_dir_and_tmp_are_writable(
    pod: dict[str, Any], container: dict[str, Any], final: Stage
) -> None:
    by_path = mounts(container, pod)
    writable = {path for path, m in by_path.items() if not m.get("readOnly", False)}
    assert writable == {image_data_dir(final), "/tmp"}
    assert "emptyDir" in by_path["/tmp"]["volume"]
    assert env_vars(container).get("TMPDIR", {"value": "/tmp"})["value"] == "/tmp"


def test_secrets_come_from_secrets_only(container: dict[str, Any], pod: dict[str, Any]) -> None:
    env = env_vars(container)
    data = config_map(container)
    for name in SECRET_VARS:
        assert name in env, name
        assert "value" not in env[name], name
        assert env[name]["valueFrom"]["secretKeyRef"]["key"] == name
        assert name not in data, f"{name} in a ConfigMap"
    literals = [str(e.get("value", "")) for e in env.values()] + list(data.values())
    assert not [v for v in literals if KEY_SHAPED.search(v)]
    # The service account's key: a file from a Secret, mounted read-only, found by
    # GOOGLE_APPLICATION_CREDENTIALS.
    creds = env["GOOGLE_APPLICATION_CREDENTIALS"]["value"]
    mount = mounts(container, pod)[posixpath.dirname(creds)]
    assert mount["readOnly"] is True
    secret = mount["volume"]["secret"]
    keys = {item["key"]: item["path"] for item in secret.get("items", [])}
    assert posixpath.basename(creds) in (keys.values() if keys else [posixpath.basename(creds)])
    assert secret["defaultMode"] & 0o007 == 0  # not readable by others


def test_every_variable_the_cronjob_sets_is_one_revbot_reads(container: dict[str, Any]) -> None:
    names = set(env_vars(container)) | set(config_map(container))
    assert names - {"TMPDIR"} <= set(REVBOT_VARS), names - set(REVBOT_VARS)


def test_the_example_secrets_hold_every_key_the_cronjob_reads(
    container: dict[str, Any], pod: dict[str, Any]
) -> None:
    secrets = {
        doc["metadata"]["name"]: {**doc.get("data", {}), **doc.get("stringData", {})}
        for doc in manifests(SECRETS_EXAMPLE)
        if doc["kind"] == "Secret"
    }
    for entry in env_vars(container).values():
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["key"] in secrets[ref["name"]], ref
    for volume in pod["volumes"]:
        if "secret" in volume:
            assert secrets[volume["secret"]["secretName"]], volume
    # Not a .yaml file: `kubectl apply -f deploy/kubernetes/` must not overwrite real Secrets
    # with these placeholders.
    assert not [
        p.name for p in KUBERNETES.glob("*.y*ml") for d in manifests(p) if d["kind"] == "Secret"
    ]


@pytest.mark.parametrize(
    "path",
    [DOCKERFILE, REPO / ".dockerignore", CI, *sorted(KUBERNETES.iterdir())],
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_no_file_holds_anything_shaped_like_a_key(path: Path) -> None:
    found = KEY_SHAPED.search(path.read_text("utf-8"))
    assert found is None, found


# -- CI -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ci() -> dict[Any, Any]:
    data = yaml.safe_load(CI.read_text("utf-8"))
    assert isinstance(data, dict)
    return data


def runs(job: dict[str, Any]) -> list[list[str]]:
    return [shlex.split(str(step["run"])) for step in job["steps"] if "run" in step]


def uses(job: dict[str, Any]) -> list[str]:
    return [str(step["uses"]) for step in job["steps"] if "uses" in step]


def test_ci_runs_on_every_push_and_pull_request_with_read_only_rights(ci: dict[Any, Any]) -> None:
    triggers = ci["on"] if "on" in ci else ci[True]  # YAML 1.1 reads a bare `on` as true
    assert {"push", "pull_request"} <= set(triggers)
    assert ci["permissions"] == {"contents": "read"}
    for name, job in ci["jobs"].items():
        assert job["runs-on"] == "ubuntu-latest", name
        assert 0 < job["timeout-minutes"] <= 60, name
        assert "actions/checkout@v4" in uses(job), name


def test_ci_lints_and_tests_on_every_supported_python(ci: dict[Any, Any]) -> None:
    (job,) = [j for j in ci["jobs"].values() if "matrix" in j.get("strategy", {})]
    versions = job["strategy"]["matrix"]["python-version"]
    assert versions == ["3.11", "3.12", "3.13"]  # strings: YAML reads 3.10 as 3.1
    assert PYPROJECT["project"]["requires-python"] == f">={versions[0]}"
    setup = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/setup-"))
    assert setup["uses"] == "actions/setup-python@v5"
    assert setup["with"]["python-version"] == "${{ matrix.python-version }}"
    commands = [words[:2] for words in runs(job)]
    assert ["make", "lint"] in commands and ["make", "test"] in commands
    assert job["strategy"].get("fail-fast") is False  # one Python failing hides no other


def test_ci_tests_the_lowest_allowed_dependencies(ci: dict[Any, Any]) -> None:
    lowest = [j for j in ci["jobs"].values() if ["make", "test-lowest"] in [w[:2] for w in runs(j)]]
    assert len(lowest) == 1
    assert "actions/setup-python@v5" in uses(lowest[0])


def test_ci_calls_only_make_targets_that_exist(ci: dict[Any, Any]) -> None:
    makefile = (REPO / "Makefile").read_text("utf-8")
    targets = set(re.findall(r"^([\w.-]+)\s*:(?!=)", makefile, flags=re.MULTILINE))
    called = {w[1] for j in ci["jobs"].values() for w in runs(j) if w[:1] == ["make"]}
    assert called <= targets, called - targets


def test_ci_builds_the_image_and_runs_it_like_the_cronjob(ci: dict[Any, Any]) -> None:
    scripts = [str(s.get("run", "")) for job in ci["jobs"].values() for s in job["steps"]]
    assert any(re.match(r"docker build\b", script) for script in scripts)
    (script,) = [s for s in scripts if "docker run" in s]
    # As the CronJob runs it: read-only root, a writable /tmp, DATA_DIR on a volume.
    for needle in ("--read-only", "--tmpfs /tmp", ":/data", "--cap-drop ALL"):
        assert needle in script, needle
