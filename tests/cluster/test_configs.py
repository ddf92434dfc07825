"""cluster/: the launcher configs validate against Ray's autoscaler schema, the KubeRay manifests name a real job
and the shared runtime env, and every place that pins Ray or the engine's requirements agrees. No cluster runs."""

from __future__ import annotations

import copy
import json
import os
import random
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml
from packaging.requirements import Requirement

from engine.runner.submit import WORKING_DIR_EXCLUDES
from engine.spec import load_job

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
LAUNCHERS = ["aws.yaml", "gcp.yaml"]
AUTH_SECRET = {"name": "corpus-engine-ray-token", "key": "auth_token"}


def load(name: str) -> Any:
    return yaml.safe_load((CLUSTER / name).read_text())


def pyproject_requirements() -> dict[str, Requirement]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    return {Requirement(line).name: Requirement(line) for line in data["project"]["dependencies"]}


def requirements_txt() -> dict[str, Requirement]:
    lines = (CLUSTER / "requirements.txt").read_text().splitlines()
    reqs = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    return {r.name: r for r in reqs}


@pytest.mark.parametrize("name", sorted(p.relative_to(CLUSTER).as_posix() for p in CLUSTER.rglob("*.yaml")))
def test_every_config_parses(name: str) -> None:
    documents = list(yaml.safe_load_all((CLUSTER / name).read_text()))
    assert documents
    assert all(isinstance(d, dict) and d for d in documents)


# --- Ray cluster launcher (AWS, GCP) -------------------------------------------------------------------------


def ray_schema() -> dict[str, Any]:
    path = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
    if not path.is_file():
        pytest.skip(f"this Ray ({ray.__version__}) ships no autoscaler schema at {path}")
    return json.loads(path.read_text())


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_config_validates_against_rays_schema(name: str) -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema comes with ray[default]")
    from ray.autoscaler._private.util import validate_config

    config = load(name)
    jsonschema.validate(config, ray_schema())
    validate_config(config)  # the schema plus Ray's own consistency checks (head_node_type, node types)


@pytest.mark.parametrize("name", LAUNCHERS)
def test_schema_check_rejects_a_broken_launcher_config(name: str) -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema comes with ray[default]")
    config = copy.deepcopy(load(name))
    del config["available_node_types"]["cpu_worker"]["node_config"]
    with pytest.raises(jsonschema.ValidationError, match="node_config"):
        jsonschema.validate(config, ray_schema())


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_runs_the_engine_with_token_auth(name: str) -> None:
    config = load(name)
    assert config["docker"]["image"] == f"rayproject/ray:{ray.__version__}-py311-cpu"
    # The project and the user's token reach every node; the nodes install the engine's requirements.
    assert config["file_mounts"]["~/corpus-engine"] == "."
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert any("cluster/requirements.txt" in c for c in config["setup_commands"])
    assert "out" in config["rsync_exclude"]
    assert ".git" in config["rsync_exclude"]
    starts = [c for c in config["head_start_ray_commands"] + config["worker_start_ray_commands"] if "ray start" in c]
    assert len(starts) == 2
    assert all("RAY_AUTH_MODE=token ray start" in c for c in starts)
    head = next(c for c in config["head_start_ray_commands"] if "--head" in c)
    assert "--dashboard-host=127.0.0.1" in head  # reached over `ray dashboard` (SSH), not an open port
    assert config["head_node_type"] in config["available_node_types"]


# --- requirements: one list, three places ------------------------------------------------------------------


def test_requirements_txt_is_pyproject_with_the_submitting_ray_pinned() -> None:
    project, cluster = pyproject_requirements(), requirements_txt()
    assert set(project) - set(cluster) == set(), "add these to cluster/requirements.txt (pyproject has them)"
    assert set(cluster) - set(project) == set(), "drop these from cluster/requirements.txt (not in pyproject)"
    for name, requirement in cluster.items():
        if name == "ray":
            assert str(requirement.specifier) == f"=={ray.__version__}", "nodes must run the submitter's Ray"
            assert requirement.extras == {"default"}
            assert requirement.specifier.contains(ray.__version__)
        else:
            assert requirement.specifier == project[name].specifier, name


def test_runtime_env_is_valid_for_ray_and_carries_the_engines_requirements() -> None:
    from ray.runtime_env import RuntimeEnv

    data = load("runtime_env.yaml")
    RuntimeEnv(**data)  # Ray's own validation of every field
    packages = {Requirement(p).name: Requirement(p) for p in data["pip"]["packages"]}
    project = pyproject_requirements()
    assert set(project) - {"ray"} - set(packages) == set(), "add these to cluster/runtime_env.yaml pip"
    assert set(packages) - set(project) == set(), "drop these from cluster/runtime_env.yaml pip (not in pyproject)"
    assert "ray" not in packages, "the cluster's own Ray is used"
    for name, requirement in packages.items():
        assert requirement.specifier == project[name].specifier, name
    assert set(WORKING_DIR_EXCLUDES) <= set(data["excludes"])
    assert "working_dir" not in data  # `corpus-engine submit` ships the current directory itself
    assert not any(k.startswith("RAY_AUTH") for k in data["env_vars"]), "tokens never travel in a runtime env"


# --- KubeRay -------------------------------------------------------------------------------------------------


def dockerfile() -> str:
    return (CLUSTER / "Dockerfile").read_text()


def test_dockerfile_builds_from_the_submitting_ray_and_copies_what_exists() -> None:
    text = dockerfile()
    assert re.search(rf"^FROM rayproject/ray:{re.escape(ray.__version__)}-py311-cpu$", text, re.M)
    assert "pip install --no-cache-dir -r cluster/requirements.txt" in text
    for source in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", text, re.M):
        for path in source.split():
            assert (REPO / path).exists(), f"Dockerfile copies {path}, which is not in the repository"


def workdir() -> str:
    match = re.search(r"^WORKDIR (\S+)$", dockerfile(), re.M)
    assert match is not None
    return match.group(1)


def ray_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    pods = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
    return [c for pod in pods for c in pod["spec"]["containers"]]


def assert_token_env(env: list[dict[str, Any]]) -> None:
    values = {e["name"]: e for e in env}
    assert values["RAY_AUTH_MODE"]["value"] == "token"
    assert values["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == AUTH_SECRET


def test_raycluster_runs_the_engine_image_with_token_auth() -> None:
    cluster = load("kuberay/raycluster.yaml")
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    spec = cluster["spec"]
    assert spec["rayVersion"] == ray.__version__
    assert_token_env(spec["autoscalerOptions"]["env"])
    containers = ray_containers(spec)
    assert len(containers) == 2
    for container in containers:
        assert container["image"].endswith(f"/corpus-engine:{ray.__version__}")
        assert_token_env(container["env"])
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


def test_rayjob_runs_a_job_file_from_jobs_with_the_shared_cluster_and_runtime_env() -> None:
    job = load("kuberay/rayjob.yaml")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = job["spec"]
    assert spec["rayClusterSpec"] == load("kuberay/raycluster.yaml")["spec"], "rayjob.yaml drifted from raycluster"
    submitter = spec["submitterPodTemplate"]["spec"]["containers"][0]
    assert_token_env(submitter["env"])

    # `cd <image workdir> && python -m engine run <job> --address auto --output <url>`
    first, second = (shlex.split(part) for part in spec["entrypoint"].split("&&"))
    assert first == ["cd", workdir()]
    assert second[:4] == ["python", "-m", "engine", "run"]
    job_file, options = second[4], second[5:]
    assert dict(zip(options[::2], options[1::2], strict=True)) == {
        "--address": "auto",
        "--output": "s3://BUCKET/corpus-engine/sample",
    }
    assert job_file.startswith("jobs/")
    assert (REPO / job_file).is_file(), f"the RayJob runs {job_file}, which is not in the repository"
    spec_job = load_job(REPO / job_file, output=options[options.index("--output") + 1])
    assert spec_job.output.path.startswith("s3://")
    # Its local input is inside the image (Dockerfile copies it under the workdir).
    assert any(spec_job.input.path in line for line in dockerfile().splitlines() if line.startswith("COPY"))

    from ray.runtime_env import RuntimeEnv

    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    RuntimeEnv(**runtime_env)
    assert runtime_env["env_vars"] == load("runtime_env.yaml")["env_vars"]
    assert "pip" not in runtime_env  # the image has the requirements


# --- local multi-node cluster script --------------------------------------------------------------------------


def test_local_cluster_script_is_valid_bash_with_token_auth_and_stops_only_its_own_nodes() -> None:
    script = CLUSTER / "local_cluster.sh"
    bash = shutil.which("bash")
    assert bash is not None
    subprocess.run([bash, "-n", str(script)], check=True)
    text = script.read_text()
    assert script.stat().st_mode & 0o111, "local_cluster.sh must be executable"
    assert "export RAY_AUTH_MODE=token" in text
    assert "get-auth-token --generate" in text
    assert "--node-ip-address=127.0.0.1" in text
    assert "ray stop" not in text.replace("(unlike `ray stop`)", "")  # would stop every Ray on the machine
    usage = subprocess.run([bash, str(script)], capture_output=True, text=True, check=False)
    assert usage.returncode == 2
    assert "up [WORKERS] | down | status" in usage.stderr


def _free_base_port() -> int:
    """A port P with P, P+1, P+100..P+102 and P+201..P+202 free (the script's port layout for one worker)."""
    rng = random.Random(6)
    for _ in range(50):
        base = rng.randrange(20000, 40000)
        sockets: list[socket.socket] = []
        try:
            for port in (base, base + 1, base + 100, base + 101, base + 201):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    pytest.fail("no free port range found")


@pytest.mark.slow
@pytest.mark.cluster
def test_local_cluster_script_runs_the_sample_job_on_two_nodes(tmp_path: Path) -> None:
    state = Path(tempfile.mkdtemp(prefix="ce-lc-", dir="/tmp"))  # short: Ray's socket paths must stay < 108 chars
    home = tmp_path / "home"
    home.mkdir()
    base = _free_base_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_API_SERVER", "RAY_AUTH"))}
    env.update(
        HOME=str(home),
        CORPUS_ENGINE_CLUSTER_DIR=str(state),
        GCS_PORT=str(base),
        DASHBOARD_PORT=str(base + 2),
        RAY=str(Path(sys.executable).parent / "ray"),
    )
    script = str(CLUSTER / "local_cluster.sh")
    try:
        up = subprocess.run([script, "up", "1"], env=env, capture_output=True, text=True, timeout=400, check=False)
        assert up.returncode == 0, up.stdout + up.stderr
        assert (home / ".ray" / "auth_token").is_file()  # generated by the script, read by submit
        out = tmp_path / "out"
        submit = subprocess.run(
            [sys.executable, "-m", "engine", "submit", "jobs/sample.yaml"]
            + ["--address", f"http://127.0.0.1:{base + 2}", "--output", str(out)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
            check=False,
        )
        assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-3000:]
        assert json.loads((out / "stats.json").read_text())["docs_in"] == 697
    finally:
        down = subprocess.run([script, "down"], env=env, capture_output=True, text=True, timeout=120, check=False)
        processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
        shutil.rmtree(state, ignore_errors=True)
    assert down.returncode == 0, down.stderr
    assert str(state) not in processes, "local_cluster.sh down left processes running"
