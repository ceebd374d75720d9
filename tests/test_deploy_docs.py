"""docs/deploy: the Kubernetes manifests are valid YAML of the right shape, and the settings in them load."""
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
