#!/usr/bin/env bash
# The production stack on one machine, one command (`make prod`): PostgreSQL and Redis (from the distribution's
# packages, installed when missing and run as root), the database migrated, static files collected, then nginx (TLS,
# the proxy that sends /ws/ to daphne and the rest to granian), granian, daphne and a Celery worker per queue
# under honcho (Procfile), their logs on this terminal. Ctrl-C stops everything, PostgreSQL and Redis last.
#
# Everything it keeps is under PROD_DIR (default var/prod): the database, Redis's append-only file, the secrets
# (env, made once, mode 600) and a self-signed certificate (replace tls/cert.pem and tls/key.pem with the hospital's).
#   deploy/prod.sh                 start (PROD_PORT 8443, PROD_PG_PORT 5433, PROD_REDIS_PORT 6380)
#   deploy/prod.sh manage ARGS     run manage.py with the stack's environment, e.g. create_user NAME --role admin
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${VENV:-.venv}
export PATH="$ROOT/$VENV/bin:$PATH"
export PROD_DIR=$(realpath -m "${PROD_DIR:-var/prod}")
PROD_PORT=${PROD_PORT:-8443}
PROD_PG_PORT=${PROD_PG_PORT:-5433}
PROD_REDIS_PORT=${PROD_REDIS_PORT:-6380}
export PROD_WEB_PORT=${PROD_WEB_PORT:-8000} PROD_WS_PORT=${PROD_WS_PORT:-8001}
mkdir -p "$PROD_DIR"
chmod 755 "$PROD_DIR"

as_postgres() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
load_env() { set -a; . "$PROD_DIR/env"; set +a; }

if [ "${1:-}" = manage ]; then
  shift
  load_env
  exec python manage.py "$@"
fi

missing=()
ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || missing+=(postgresql)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v nginx >/dev/null || missing+=(nginx)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing: ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root" >&2
    exit 1
  fi
  echo "== installing ${missing[*]} from the distribution's packages"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)

if [ ! -f "$PROD_DIR/env" ]; then
  echo "== writing the stack's environment and secrets to $PROD_DIR/env (mode 600)"
  secret() { python -c "import secrets; print(secrets.token_urlsafe(48))"; }
  host=$(hostname -f 2>/dev/null || hostname)
  umask 077
  cat > "$PROD_DIR/env" <<ENV
HEALTHAGENT_PROFILE=production
SECRET_KEY=$(secret)
ANONYMIZATION_KEY=$(secret)
DATABASE_URL=postgres://postgres@127.0.0.1:$PROD_PG_PORT/healthagent
REDIS_URL=redis://127.0.0.1:$PROD_REDIS_PORT/0
ALLOWED_HOSTS=127.0.0.1,localhost,$host
CSRF_TRUSTED_ORIGINS=https://127.0.0.1:$PROD_PORT,https://localhost:$PROD_PORT,https://$host:$PROD_PORT
TRUSTED_PROXY_COUNT=1
HEALTHAGENT_VAR_DIR=$PROD_DIR/data
TRAJECTORY_ROOT=$PROD_DIR/data/trajectories
STATIC_ROOT=$PROD_DIR/static
ENV
  umask 022
fi
load_env

if [ ! -f "$PROD_DIR/tls/cert.pem" ]; then
  echo "== a self-signed TLS certificate in $PROD_DIR/tls (replace it with the hospital's)"
  mkdir -p "$PROD_DIR/tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$PROD_DIR/tls/key.pem" -out "$PROD_DIR/tls/cert.pem" 2>/dev/null
  chmod 600 "$PROD_DIR/tls/key.pem"
fi

for port in "$PROD_PG_PORT" "$PROD_REDIS_PORT" "$PROD_PORT" "$PROD_WEB_PORT" "$PROD_WS_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is taken: is the stack already running? (stop it with Ctrl-C where it runs)" >&2
    exit 1
  fi
done

stop_services() {
  echo "== stopping PostgreSQL and Redis"
  redis-cli -p "$PROD_REDIS_PORT" shutdown >/dev/null 2>&1 || true
  as_postgres "'$PG_BIN/pg_ctl' -D '$PROD_DIR/pg' -m fast -w stop" >/dev/null 2>&1 || true
}
trap stop_services EXIT

if [ ! -f "$PROD_DIR/pg/PG_VERSION" ]; then
  echo "== a new PostgreSQL cluster in $PROD_DIR/pg"
  mkdir -p "$PROD_DIR/pg"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$PROD_DIR/pg"
  as_postgres "'$PG_BIN/initdb' -D '$PROD_DIR/pg' -A trust -U postgres -E UTF8" >/dev/null
fi
echo "== PostgreSQL on 127.0.0.1:$PROD_PG_PORT, Redis on 127.0.0.1:$PROD_REDIS_PORT"
as_postgres "'$PG_BIN/pg_ctl' -D '$PROD_DIR/pg' -l '$PROD_DIR/pg/server.log' -w \
  -o \"-h 127.0.0.1 -p $PROD_PG_PORT -k '$PROD_DIR/pg'\" start" >/dev/null
as_postgres "psql -h 127.0.0.1 -p $PROD_PG_PORT -U postgres -tAc \"SELECT 1 FROM pg_database WHERE datname = 'healthagent'\"" \
  | grep -q 1 || as_postgres "'$PG_BIN/createdb' -h 127.0.0.1 -p $PROD_PG_PORT -U postgres healthagent"
mkdir -p "$PROD_DIR/redis"
redis-server --bind 127.0.0.1 --port "$PROD_REDIS_PORT" --dir "$PROD_DIR/redis" --appendonly yes \
  --daemonize yes --logfile "$PROD_DIR/redis/redis.log"
for _ in $(seq 50); do redis-cli -p "$PROD_REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$PROD_REDIS_PORT" ping >/dev/null || { echo "Redis did not start: see $PROD_DIR/redis/redis.log" >&2; exit 1; }

echo "== migrating and collecting static files"
python manage.py migrate --noinput >/dev/null
python manage.py collectstatic --noinput --verbosity 0
python manage.py charts_prune >/dev/null

mkdir -p "$PROD_DIR/nginx"
nginx_user=""
if [ "$(id -u)" = 0 ]; then nginx_user="user www-data;"; chown -R www-data "$PROD_DIR/nginx"; fi
cat > "$PROD_DIR/nginx.conf" <<NGINX
$nginx_user
pid $PROD_DIR/nginx/nginx.pid;
error_log stderr warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $PROD_DIR/nginx/body;
  proxy_temp_path $PROD_DIR/nginx/proxy;
  fastcgi_temp_path $PROD_DIR/nginx/fastcgi;
  uwsgi_temp_path $PROD_DIR/nginx/uwsgi;
  scgi_temp_path $PROD_DIR/nginx/scgi;
  client_max_body_size 100m;
  server {
    listen $PROD_PORT ssl;
    ssl_certificate $PROD_DIR/tls/cert.pem;
    ssl_certificate_key $PROD_DIR/tls/key.pem;
    # A location that sets any header inherits none from the server block: each names all of its own.
    location /ws/ {
      proxy_pass http://127.0.0.1:$PROD_WS_PORT;
      proxy_http_version 1.1;
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto https;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_read_timeout 1h;
    }
    location / {
      proxy_pass http://127.0.0.1:$PROD_WEB_PORT;
      proxy_http_version 1.1;
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto https;
      proxy_set_header Connection "";
    }
  }
}
NGINX

echo "== the site: https://127.0.0.1:$PROD_PORT/ (first admin: deploy/prod.sh manage create_user NAME --role admin)"
# Not exec: when honcho ends (Ctrl-C, or a process that died), the trap stops PostgreSQL and Redis.
honcho start -f Procfile -d "$ROOT" -e "$PROD_DIR/env"
