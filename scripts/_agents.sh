# Sourced by scripts/test: install the real agent CLIs the end-to-end tests drive (codex, claude),
# at the exact versions of tests/npm/package-lock.json, into .cache/agents, and tell the tests
# where they are (ORCA_TEST_AGENT_BIN). Reinstalls only when the lock changed.
# To move to newer CLIs: edit tests/npm/package.json, run `npm install` in tests/npm, commit both.

AGENTS_DIR="$ROOT/.cache/agents"
if ! command -v npm >/dev/null 2>&1; then
  echo "the end-to-end tests need Node.js and npm (to install codex and claude); none on PATH" >&2
  exit 1
fi
if ! cmp -s "$ROOT/tests/npm/package-lock.json" "$AGENTS_DIR/package-lock.json" ||
  [ ! -x "$AGENTS_DIR/node_modules/.bin/codex" ] || [ ! -x "$AGENTS_DIR/node_modules/.bin/claude" ]; then
  echo "==> installing the real agent CLIs (tests/npm/package-lock.json) into .cache/agents"
  rm -rf "$AGENTS_DIR"
  mkdir -p "$AGENTS_DIR"
  cp "$ROOT/tests/npm/package.json" "$ROOT/tests/npm/package-lock.json" "$AGENTS_DIR/"
  (cd "$AGENTS_DIR" && npm ci --no-audit --no-fund --loglevel=error)
fi
export ORCA_TEST_AGENT_BIN="$AGENTS_DIR/node_modules/.bin"
echo "==> agent CLIs: $("$ORCA_TEST_AGENT_BIN/codex" --version), claude $("$ORCA_TEST_AGENT_BIN/claude" --version)"
