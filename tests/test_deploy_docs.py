"""docs/deploy: the Kubernetes manifests are valid YAML of the right shape, and the settings in them load;
the Dockerfile, compose.yaml and the manifest agree on the image, its user, port and settings path."""
import json
import re
import tomllib

import yaml

from core.settings import PROJECT_ROOT, settings_from_dict

MANIFEST = PROJECT_ROOT / "docs" / "deploy" / "kubernetes.yaml"


def documents():
    return [d for d in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")) if d]


def test_manifest_has_every_piece():
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in documents())
    assert kinds == sorted([("Deployment", "skillbot-redis"), ("Service", "skillbot-redis"),
                            ("ConfigMap", "skillbot-settings"), ("Deployment", "skillbot"),
                            ("Service", "skillbot"), ("HorizontalPodAutoscaler", "skillbot")])


def test_deployment_and_hpa_fit_together():
    docs = {(d["kind"], d["metadata"]["name"]): d for d in documents()}
    deployment = docs[("Deployment", "skillbot")]
    assert deployment["spec"]["selector"]["matchLabels"] == deployment["spec"]["template"]["metadata"]["labels"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    hpa = docs[("HorizontalPodAutoscaler", "skillbot")]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "skillbot"
    assert hpa["spec"]["minReplicas"] >= 2
    redis_service = docs[("Service", "skillbot-redis")]
    assert redis_service["spec"]["selector"] == docs[("Deployment", "skillbot-redis")]["spec"]["selector"]["matchLabels"]


def test_configmap_settings_are_valid_and_point_at_the_redis_service():
    config = next(d for d in documents() if d["kind"] == "ConfigMap")
    data = tomllib.loads(config["data"]["settings.toml"])
    data["wechat"]["encoding_aes_key"] = "a" * 43  # a secret in production, from the environment
    settings = settings_from_dict(data)
    assert settings.state.backend == "redis"
    assert "skillbot-redis" in settings.state.redis_url


def test_deploy_doc_names_the_manifest():
    text = (PROJECT_ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert "docs/deploy/kubernetes.yaml" in text and "nginx" in text and "[Service]" in text


# ---- the container: Dockerfile, compose.yaml and the manifest agree ------------------------------

DOCKERFILE = PROJECT_ROOT / "Dockerfile"
COMPOSE = PROJECT_ROOT / "compose.yaml"
SMOKE = PROJECT_ROOT / "scripts" / "container-smoke.sh"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def built_image_name() -> str:
    match = re.search(r'^SKILLBOT_IMAGE="\$\{SKILLBOT_IMAGE:-([^}]+)\}"', SMOKE.read_text(encoding="utf-8"), re.M)
    assert match, "scripts/container-smoke.sh names the image it builds"
    return match[1]


def test_dockerfile_runtime_shape():
    steps = dockerfile_instructions()
    assert steps[0] == ("ARG", steps[0][1]) and steps[0][1].startswith("BASE_IMAGE=")
    froms = [args for kind, args in steps if kind == "FROM"]
    assert froms and all(args.split()[0] == "${BASE_IMAGE}" for args in froms)  # the base is a build argument
    runtime = steps[max(i for i, (kind, _) in enumerate(steps) if kind == "FROM"):]
    kinds = dict(runtime)
    assert kinds["USER"] == "skillbot"  # not root
    assert json.loads(kinds["VOLUME"]) == ["/etc/skillbot", "/var/lib/skillbot"]
    assert "/healthz" in kinds["HEALTHCHECK"] and "8080" in kinds["HEALTHCHECK"]
    assert kinds["EXPOSE"] == "8080"
    assert json.loads(kinds["ENTRYPOINT"]) == ["python3", "run.py"]
    assert json.loads(kinds["CMD"]) == ["--settings", "/etc/skillbot/settings.toml"]
    assert not any(kind == "RUN" and "apt-get" in args for kind, args in runtime)  # no build tools


def test_manifest_runs_the_image_the_dockerfile_builds():
    docs = {(d["kind"], d["metadata"]["name"]): d for d in documents()}
    pod = docs[("Deployment", "skillbot")]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == built_image_name()
    # args follow the image's ENTRYPOINT (python3 run.py) and read the mounted ConfigMap
    assert container["args"][:2] == ["--settings", "/etc/skillbot/settings.toml"]
    assert "/etc/skillbot" in [m["mountPath"] for m in container["volumeMounts"]]
    assert container["ports"][0]["containerPort"] == 8080
    uid = re.search(r"--uid (\d+)", DOCKERFILE.read_text(encoding="utf-8"))[1]
    assert pod["securityContext"]["runAsUser"] == int(uid) and pod["securityContext"]["runAsNonRoot"]


def test_compose_runs_two_workers_on_redis_with_settings_that_load():
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    services = compose["services"]
    assert set(services) == {"redis", "skillbot"}
    bot = services["skillbot"]
    assert bot["build"]["context"] == "." and "BASE_IMAGE" in bot["build"]["args"]
    assert bot["image"].endswith(built_image_name() + "}")
    command = bot["command"]
    assert command[command.index("--workers") + 1] == "2"
    assert command[command.index("--settings") + 1] == "/etc/skillbot/settings.toml"
    mounts = dict(v.split(":")[:2] for v in bot["volumes"])
    settings_file = PROJECT_ROOT / next(k for k, v in mounts.items() if v == "/etc/skillbot/settings.toml")
    settings = settings_from_dict(tomllib.loads(settings_file.read_text(encoding="utf-8")))
    assert settings.state.backend == "redis"
    assert settings.state.redis_url.startswith("redis://redis:")  # the compose service's name
    assert "redis-server" in services["redis"]["command"] and "--protected-mode" in services["redis"]["command"]
    assert "/var/lib/skillbot" in mounts.values()


def test_dockerignore_keeps_the_context_small():
    ignored = {line.strip() for line in (PROJECT_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "tests", "bench"} <= ignored
    for needed in ("core", "plugins", "run.py", "settings.toml", "pyproject.toml"):
        assert needed not in ignored
