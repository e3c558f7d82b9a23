# Sourced by scripts/test: the PostgreSQL tests start a private server of their own (one per
# test process, in a temporary directory, as an unprivileged user when run as root, stopped at
# the end: tests/support/postgres.py) from the machine's server binaries. Installs Debian's
# postgresql package when there are none. With ORCA_TEST_POSTGRES_URL set (a postgresql:// URL
# whose user may create databases), the tests use that server instead and nothing is installed.

if [ -z "${ORCA_TEST_POSTGRES_URL:-}" ] &&
  ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 && ! command -v pg_ctl >/dev/null 2>&1; then
  echo "==> installing PostgreSQL (Debian's postgresql package) for the tests"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi
if [ -n "${ORCA_TEST_POSTGRES_URL:-}" ]; then
  echo "==> PostgreSQL tests: the server at ORCA_TEST_POSTGRES_URL"
else
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  echo "==> PostgreSQL tests: private servers from $("${pg_bin:-$(dirname "$(command -v pg_ctl)")}/postgres" --version)"
fi
