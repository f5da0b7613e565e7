"""deploy/: prefect.yaml against a real local Prefect server and worker; Kubernetes templates rendered."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

import midi_factory
from support import free_port, write_corpus

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
PREFECT_YAML = yaml.safe_load((DEPLOY / "prefect.yaml").read_text())
BIN = Path(sys.executable).parent


def _deployments():
    return {d["name"]: d for d in PREFECT_YAML["deployments"]}


def test_every_deployment_points_at_a_flow_that_accepts_its_parameters():
    from prefect.flows import Flow

    for name, dep in _deployments().items():
        path, attr = dep["entrypoint"].split(":")
        flow = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), attr)
        assert isinstance(flow, Flow), name
        accepted = inspect.signature(flow.fn).parameters
        assert set(dep.get("parameters", {})) <= set(accepted), name
        assert dep["work_pool"]["name"] in ("cpu", "gpu")
    deps = _deployments()
    assert deps["nightly-ingest"]["schedules"][0]["cron"] == "0 2 * * *"
    assert deps["train-gpu"]["work_pool"]["name"] == "gpu"
    assert deps["train-gpu"]["concurrency_limit"]["limit"] == 1
    assert set(deps) == {"nightly-ingest", "dataset", "train-gpu", "generate", "pipeline"}


@pytest.mark.parametrize("name,gpu", [("gpu-base-job-template.json", True), ("cpu-base-job-template.json", False)])
def test_kubernetes_job_templates_render_to_valid_jobs(name, gpu):
    from prefect.utilities.templating import apply_values

    template = json.loads((DEPLOY / "k8s" / name).read_text())
    values = {k: v.get("default") for k, v in template["variables"]["properties"].items()}
    values.update(image="registry.example/melodyflow:1.0", env={"PREFECT_API_URL": "http://prefect:4200/api"},
                  name="run-1")
    if gpu:
        values["gpu_count"] = 2
    rendered = apply_values(template["job_configuration"], values)
    job = rendered["job_manifest"]
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example/melodyflow:1.0"
    assert container["env"] == {"PREFECT_API_URL": "http://prefect:4200/api"}
    assert pod["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 0
    assert "{{" not in json.dumps(rendered), "every placeholder must have a value"
    if gpu:
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
        assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
        assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    else:
        assert "nvidia.com/gpu" not in json.dumps(container)


def test_dockerfiles_install_existing_extras_and_code():
    import tomllib

    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for name, pool in (("Dockerfile.cpu", "cpu"), ("Dockerfile.gpu", "gpu")):
        text = (DEPLOY / "docker" / name).read_text()
        installed = text.split('pip install --no-cache-dir ".[', 1)[1].split("]", 1)[0].split(",")
        assert set(installed) <= extras, name
        for folder in ("flows", "transforms", "models"):
            assert f"COPY {folder} ./{folder}" in text
        assert f'"--pool", "{pool}"' in text and "MELODYFLOW_HOME=/opt/melodyflow" in text
    assert "pip uninstall -y tensorflow-cpu" in (DEPLOY / "docker" / "Dockerfile.gpu").read_text()


def _prefect(args, env, **kw):
    return subprocess.run([str(BIN / "prefect"), *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=kw.pop("timeout", 180), **kw)


@pytest.mark.slow
def test_deploy_all_then_a_process_worker_runs_the_nightly_ingestion(tmp_path):
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"),
           "PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "MELODYFLOW_HOME": str(ROOT), "PREFECT_LOGGING_LEVEL": "INFO"}
    env.pop("PREFECT_API_KEY", None)
    server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    worker = None
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "prefect server did not become healthy"
            time.sleep(0.5)
        for pool in ("cpu", "gpu"):
            r = _prefect(["work-pool", "create", pool, "--type", "process"], env)
            assert r.returncode == 0, r.stdout + r.stderr
        r = _prefect(["--no-prompt", "deploy", "--all", "--prefect-file", "deploy/prefect.yaml"], env)
        assert r.returncode == 0, r.stdout + r.stderr
        r = _prefect(["deployment", "ls"], env)
        for name in ("nightly-ingest", "dataset", "train-gpu", "generate", "pipeline"):
            assert name in r.stdout

        corpus = write_corpus(tmp_path / "corpus", {f"t{i}.mid": midi_factory.melodic_midi(i) for i in range(5)})
        data = tmp_path / "data"
        worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", "cpu"], env=env, cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        r = _prefect(["deployment", "run", "ingest-corpus/nightly-ingest", "--param", f"source={corpus}",
                      "--param", f"data_root={data}", "--param", "workers=1", "--watch", "--watch-timeout", "240"],
                     env, timeout=300)
        assert r.returncode == 0 and "Completed" in r.stdout, r.stdout + r.stderr
        markers = list((data / "notesequences").glob("batch-*/COMPLETED"))
        assert len(markers) == 1
        report = json.loads((markers[0].parent / "report.json").read_text())
        assert report["counts"]["converted"] == 5
    finally:
        for proc in (worker, server):
            if proc is not None:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        shutil.rmtree(tmp_path / "prefect-home", ignore_errors=True)


def test_multiworker_training_job_gives_each_pod_its_role_and_a_valid_train_command(tmp_path):
    """No cluster here: each pod's script runs under sh with the Job's environment and its completion index,
    against a stand-in `melodyflow` that records TF_CONFIG and its arguments; those are then checked with
    melodyflow's own TF_CONFIG reading and CLI parser."""
    import shlex

    from melodyflow.flows.cli.app import build_parser
    from melodyflow.models.training.cluster import cluster_role

    service, job = yaml.safe_load_all((DEPLOY / "k8s" / "multiworker-training.yaml").read_text())
    pod = job["spec"]["template"]
    assert service["kind"] == "Service" and service["spec"]["clusterIP"] == "None"
    assert job["kind"] == "Job" and job["spec"]["completionMode"] == "Indexed"
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["subdomain"] == service["metadata"]["name"]
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    workers = int(env["WORKERS"])
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == workers
    assert env["JOB_NAME"] == job["metadata"]["name"] and env["SERVICE"] == service["metadata"]["name"]
    assert int(env["PORT"]) == service["spec"]["ports"][0]["port"] == container["ports"][0]["containerPort"]

    stand_in = tmp_path / "bin" / "melodyflow"
    stand_in.parent.mkdir()
    stand_in.write_text('#!/bin/sh\nprintf "%s\\n" "$TF_CONFIG" > "$RECORD"\nfor a in "$@"; do printf "%s\\n" "$a"'
                        ' >> "$RECORD"; done\n')
    stand_in.chmod(0o755)
    hosts = [f"{env['JOB_NAME']}-{i}.{env['SERVICE']}:{env['PORT']}" for i in range(workers)]
    for index in range(workers):
        record = tmp_path / f"pod-{index}.txt"
        run_env = {**env, "JOB_COMPLETION_INDEX": str(index), "RECORD": str(record),
                   "PATH": f"{stand_in.parent}:{os.environ['PATH']}"}
        subprocess.run([*container["command"], *container["args"]], env=run_env, check=True)
        tf_config, *argv = record.read_text().splitlines()
        assert json.loads(tf_config)["cluster"]["worker"] == hosts
        role = cluster_role({"TF_CONFIG": tf_config})
        assert (role.workers, role.index, role.is_chief) == (workers, index, index == 0)
        args = build_parser().parse_args(argv)
        assert (args.command, args.data_root, args.run_dir) == ("train", env["DATA_ROOT"], env["RUN_DIR"]), \
            shlex.join(argv)
