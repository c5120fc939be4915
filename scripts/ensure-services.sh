#!/usr/bin/env bash
# Starts PostgreSQL and Redis when they are not answering on their usual local ports.
# Honours RIDEHAIL_TEST_DATABASE_URL / RIDEHAIL_TEST_REDIS_URL: if those point elsewhere,
# nothing is started here.
set -u

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {
  for _ in $(seq 1 50); do up "$1" && return 0; sleep 0.2; done
  return 1
}

if [ -z "${RIDEHAIL_TEST_DATABASE_URL:-}" ] && ! up 5432; then
  echo "PostgreSQL is not running; starting it"
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    for v in $(ls /etc/postgresql); do pg_ctlcluster --skip-systemctl-redirect "$v" main start || true; done
  fi
  wait_for 5432 || { echo "could not start PostgreSQL on 127.0.0.1:5432" >&2; exit 1; }
fi

if [ -z "${RIDEHAIL_TEST_REDIS_URL:-}" ] && ! up 6379; then
  echo "Redis is not running; starting it"
  command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 1; }
  redis-server --daemonize yes --port 6379 --save "" --appendonly no >/dev/null
  wait_for 6379 || { echo "could not start Redis on 127.0.0.1:6379" >&2; exit 1; }
fi
exit 0
