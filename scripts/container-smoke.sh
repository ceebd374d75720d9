#!/usr/bin/env bash
# Build Skillbot's container image with podman and smoke-test it, from nothing but Debian's
# packages and PyPI (no container registry needed):
#   1. a base image skillbot-base:bookworm from a debootstrapped Debian root (only when missing),
#   2. the image (Dockerfile, BASE_IMAGE = that base),
#   3. one container: a signed WeChat text message gets reply XML, a bad signature gets 403,
#      /healthz is ok and the image's HEALTHCHECK passes,
#   4. compose.yaml with podman-compose (else a pod): Redis and two workers sharing one
#      rate limit through Redis.
# Not part of ./scripts/test.sh. Needs root (debootstrap, podman). Prints PASS/FAIL per check.
#
# Environment: BASE_IMAGE, SKILLBOT_IMAGE, REDIS_IMAGE (image names), DEBIAN_MIRROR,
# SKILLBOT_ROOTFS_DIR (where debootstrap unpacks), KEEP=1 (leave the containers running),
# USE_COMPOSE=0 (the pod variant of step 4 even where podman-compose is installed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BASE_IMAGE="${BASE_IMAGE:-localhost/skillbot-base:bookworm}"
SKILLBOT_IMAGE="${SKILLBOT_IMAGE:-localhost/skillbot:latest}"
REDIS_IMAGE="${REDIS_IMAGE:-localhost/skillbot-redis:bookworm}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ROOTFS_DIR="${SKILLBOT_ROOTFS_DIR:-/var/tmp/skillbot-rootfs}"
TOKEN="smoke-$RANDOM$RANDOM"
NAME="skillbot-smoke-$$"
PROJECT="skillbotsmoke$$"
PASSED=()

step() { echo; echo "==> $*"; }
pass() { echo "PASS: $*"; PASSED+=("$*"); }
fail() { echo "FAIL: $*" >&2; exit 1; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

for tool in podman python3; do
  command -v "$tool" >/dev/null || fail "$tool is missing (Debian: apt-get install podman python3)"
done

CLEANUP=()
cleanup() {
  if [ "${KEEP:-0}" = 1 ]; then echo "KEEP=1: left running: ${CLEANUP[*]:-nothing}"; return; fi
  local i  # newest first: the podman settings file goes last
  for ((i = ${#CLEANUP[@]} - 1; i >= 0; i--)); do eval "${CLEANUP[$i]}" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

# ---- 1. the base image ----------------------------------------------------------------------------
step "base image $BASE_IMAGE"
if podman image exists "$BASE_IMAGE"; then
  echo "already here (podman rmi $BASE_IMAGE to rebuild it)"
else
  command -v debootstrap >/dev/null || fail "debootstrap is missing (apt-get install debootstrap)"
  rm -rf "$ROOTFS_DIR"
  echo "debootstrap bookworm into $ROOTFS_DIR from $DEBIAN_MIRROR (a few minutes) ..."
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$ROOTFS_DIR" "$DEBIAN_MIRROR"
  # A smaller image: no package lists, caches, manuals or documentation.
  rm -rf "$ROOTFS_DIR"/var/lib/apt/lists/* "$ROOTFS_DIR"/var/cache/apt/* \
    "$ROOTFS_DIR"/usr/share/doc/* "$ROOTFS_DIR"/usr/share/man/* "$ROOTFS_DIR"/usr/share/info/*
  tar -C "$ROOTFS_DIR" -c . | podman import --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE"
  rm -rf "$ROOTFS_DIR"
fi
pass "base image $BASE_IMAGE ($(podman image inspect --format '{{.Size}}' "$BASE_IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"

# ---- how podman runs on this machine ----------------------------------------------------------------
# Inside some VMs and sandboxes crun refuses the cgroup layout and raising rlimits is not
# allowed: then use runc, keep the rlimits we have, and build RUN steps with chroot isolation.
step "podman runtime"
if podman run --rm --no-healthcheck "$BASE_IMAGE" true >/dev/null 2>&1; then
  echo "podman runs containers with its defaults"
else
  CONF_DIR="$(mktemp -d)"
  CLEANUP+=("rm -rf '$CONF_DIR'")
  runtime=""
  command -v runc >/dev/null && runtime='runtime = "runc"'
  cat > "$CONF_DIR/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$(ulimit -n):$(ulimit -Hn)", "nproc=4096:4096"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
$runtime
EOF
  export CONTAINERS_CONF="$CONF_DIR/containers.conf"
  export BUILDAH_ISOLATION=chroot
  echo "defaults failed; using $CONTAINERS_CONF:"; sed 's/^/    /' "$CONTAINERS_CONF"
  podman run --rm --no-healthcheck "$BASE_IMAGE" true \
    || fail "podman cannot run a container here even with runc/cgroupfs/lower rlimits (apt-get install runc?)"
fi
pass "podman runs a container"

# ---- 2. the image -------------------------------------------------------------------------------------
step "image $SKILLBOT_IMAGE"
BUILD_ARGS=(--format docker --build-arg "BASE_IMAGE=$BASE_IMAGE")
CA_BUNDLE="${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
[ -s "$CA_BUNDLE" ] && BUILD_ARGS+=(--secret "id=ca-bundle,src=$CA_BUNDLE")
podman build "${BUILD_ARGS[@]}" -t "$SKILLBOT_IMAGE" . || fail "image build"
user="$(podman image inspect --format '{{.Config.User}}' "$SKILLBOT_IMAGE")"
[ "$user" = skillbot ] || fail "the image runs as '$user', not the unprivileged user skillbot"
podman image inspect --format '{{.Config.Healthcheck}}' "$SKILLBOT_IMAGE" | grep -q healthz \
  || fail "the image has no HEALTHCHECK on /healthz (build with --format docker)"
pass "image builds ($(podman image inspect --format '{{.Size}}' "$SKILLBOT_IMAGE" | awk '{printf "%.0f MB", $1/1e6}'), user skillbot, HEALTHCHECK /healthz)"

# ---- 3. one container ------------------------------------------------------------------------------------
# wait_healthy URL: until /healthz says "ok" (60 s at most).
wait_healthy() {
  local i
  for i in $(seq 1 120); do
    if python3 -c 'import json, sys, urllib.request
body = json.load(urllib.request.urlopen(sys.argv[1], timeout=2))
sys.exit(0 if body.get("status") == "ok" else 1)' "$1" 2>/dev/null; then return 0; fi
    sleep 0.5
  done
  return 1
}

# send_text URL TOKEN USER TEXT [BAD]: post a signed plain-mode text message as WeChat does; prints
# the HTTP status and the reply's Content (checked: To/From swapped, MsgType text).
send_text() {
  python3 - "$@" <<'PY'
import hashlib, random, sys, time, urllib.error, urllib.parse, urllib.request
import xml.etree.ElementTree as ET

url, token, user, text = sys.argv[1:5]
bad = len(sys.argv) > 5
timestamp, nonce = str(int(time.time())), str(random.randrange(10**9))
signature = hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()
if bad:
    signature = "0" * 40
msg_id = str(random.randrange(10**15, 10**16))
body = (f"<xml><ToUserName><![CDATA[gh_smoke]]></ToUserName><FromUserName><![CDATA[{user}]]></FromUserName>"
        f"<CreateTime>{timestamp}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{text}]]></Content><MsgId>{msg_id}</MsgId></xml>").encode()
query = urllib.parse.urlencode({"signature": signature, "timestamp": timestamp, "nonce": nonce, "openid": user})
request = urllib.request.Request(f"{url}?{query}", data=body, headers={"Content-Type": "text/xml"})
try:
    with urllib.request.urlopen(request, timeout=15) as response:
        status, reply = response.status, response.read().decode()
except urllib.error.HTTPError as exc:
    print(exc.code)
    sys.exit(0)
root = ET.fromstring(reply)
assert root.findtext("ToUserName") == user, reply
assert root.findtext("FromUserName") == "gh_smoke", reply
assert root.findtext("MsgType") == "text", reply
content = root.findtext("Content") or ""
assert content.strip(), reply
print(status, content.replace("\n", " "))
PY
}

step "one container"
PORT="$(free_port)"
podman run -d --name "$NAME" -e "WECHAT_TOKEN=$TOKEN" -p "127.0.0.1:$PORT:8080" "$SKILLBOT_IMAGE" >/dev/null \
  || fail "container start"
CLEANUP+=("podman rm -f -v '$NAME'")
URL="http://127.0.0.1:$PORT"
wait_healthy "$URL/healthz" || { podman logs "$NAME" | tail -20; fail "/healthz never said ok"; }
pass "/healthz ok: $(python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())' "$URL/healthz" | cut -c1-60)"
podman healthcheck run "$NAME" >/dev/null || fail "the image's HEALTHCHECK fails"
pass "HEALTHCHECK passes (podman healthcheck run)"
reply="$(send_text "$URL/wechat" "$TOKEN" o_smoke_user "营业时间是几点到几点")" || fail "signed message: $reply"
case "$reply" in 200\ *在线时间*) pass "signed message answered by the FAQ: ${reply#200 }" ;;
                 *) fail "unexpected answer to a signed message: $reply" ;; esac
status="$(send_text "$URL/wechat" "$TOKEN" o_smoke_user "你好" bad)"
[ "$status" = 403 ] || fail "a wrong signature got $status, not 403"
pass "wrong signature -> 403"
if podman logs "$NAME" 2>&1 | grep -q Traceback; then podman logs "$NAME" | tail -30; fail "traceback in the log"; fi
pass "no traceback in the container's log"

# ---- 4. Redis and two workers ------------------------------------------------------------------------------
step "Redis image $REDIS_IMAGE"
if ! podman image exists "$REDIS_IMAGE"; then
  podman build --format docker --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$REDIS_IMAGE" \
    -f docs/deploy/redis.Dockerfile docs/deploy || fail "Redis image build"
fi
pass "Redis image $REDIS_IMAGE"

# The rate limit (burst 10, 0.5/s) is kept in Redis: 16 quick messages from one user, spread
# over two workers by the kernel, meet it. Each worker counting alone would let them all through.
check_shared_limit() {
  local url="$1" limited=0 answered=0 i reply
  for i in $(seq 1 16); do
    reply="$(send_text "$url/wechat" "$TOKEN" o_smoke_burst "营业时间是几点到几点")" || fail "message $i: $reply"
    case "$reply" in *太频繁*) limited=$((limited + 1)) ;; 200\ *) answered=$((answered + 1)) ;; esac
  done
  echo "16 messages from one user: $answered answered, $limited rate-limited"
  [ "$limited" -ge 3 ] && [ "$answered" -le 13 ] || fail "the rate limit was not shared by the workers"
}
count_workers() {  # worker processes (multiprocessing spawn children) in container $1
  podman exec "$1" python3 -c 'import os
print(sum(1 for p in os.listdir("/proc") if p.isdigit() and p != str(os.getpid())
          and b"spawn_main" in open(f"/proc/{p}/cmdline", "rb").read()))'
}

COMPOSE_PORT="$(free_port)"
if [ "${USE_COMPOSE:-1}" != 0 ] && command -v podman-compose >/dev/null; then
  step "compose.yaml with podman-compose (project $PROJECT)"
  export BASE_IMAGE SKILLBOT_IMAGE REDIS_IMAGE SKILLBOT_PORT="$COMPOSE_PORT" WECHAT_TOKEN="$TOKEN"
  CLEANUP+=("podman network rm -f '${PROJECT}_default'")
  CLEANUP+=("podman-compose -p '$PROJECT' -f '$ROOT/compose.yaml' down -v")
  podman-compose -p "$PROJECT" -f compose.yaml up -d --no-build >/dev/null || fail "podman-compose up"
  BOT="$(podman ps --filter "label=io.podman.compose.project=$PROJECT" --filter "label=com.docker.compose.service=skillbot" --format '{{.Names}}' | head -1)"
  REDIS="$(podman ps --filter "label=io.podman.compose.project=$PROJECT" --filter "label=com.docker.compose.service=redis" --format '{{.Names}}' | head -1)"
  [ -n "$BOT" ] && [ -n "$REDIS" ] || { podman ps -a; fail "compose did not start both services"; }
  CLEANUP+=("podman rm -f -v '$BOT' '$REDIS'")  # with their anonymous volumes (down -v keeps them)
  MODE="compose"
else
  step "a pod with Redis and Skillbot, the settings of compose.yaml (no podman-compose, or USE_COMPOSE=0)"
  POD="$PROJECT"
  podman pod create --name "$POD" --add-host redis:127.0.0.1 -p "127.0.0.1:$COMPOSE_PORT:8080" >/dev/null
  CLEANUP+=("podman pod rm -f '$POD'")
  REDIS="$POD-redis"; BOT="$POD-skillbot"
  podman run -d --pod "$POD" --name "$REDIS" "$REDIS_IMAGE" \
    redis-server --protected-mode no --save "" --appendonly no >/dev/null || fail "Redis container"
  podman run -d --pod "$POD" --name "$BOT" -e "WECHAT_TOKEN=$TOKEN" \
    -v "$ROOT/docs/deploy/compose-settings.toml:/etc/skillbot/settings.toml:ro" "$SKILLBOT_IMAGE" \
    --settings /etc/skillbot/settings.toml --workers 2 >/dev/null || fail "Skillbot container"
  MODE="pod"
fi
URL="http://127.0.0.1:$COMPOSE_PORT"
wait_healthy "$URL/healthz" || { podman logs "$BOT" | tail -20; fail "/healthz never said ok ($MODE)"; }
state="$(python3 -c 'import json, sys, urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1]))["state"])' "$URL/healthz")"
[ "$state" = up ] || fail "state backend is '$state', not Redis 'up'"
pass "$MODE: /healthz ok with Redis up"
workers="$(count_workers "$BOT")"
[ "$workers" = 2 ] || fail "expected 2 worker processes, found $workers"
pass "$MODE: run.py --workers 2 runs 2 worker processes"
check_shared_limit "$URL"
pass "$MODE: two workers share the per-user rate limit through Redis"
keys="$(podman exec "$REDIS" redis-cli --scan --pattern 'skillbot:*' | wc -l)"
[ "$keys" -gt 0 ] || fail "no skillbot:* keys in Redis"
pass "$MODE: $keys skillbot:* keys in Redis"
if podman logs "$BOT" 2>&1 | grep -q Traceback; then podman logs "$BOT" | tail -30; fail "traceback in the log"; fi

echo
echo "container smoke test: ${#PASSED[@]} checks passed"
printf '  - %s\n' "${PASSED[@]}"
