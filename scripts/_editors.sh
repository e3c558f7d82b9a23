# Sourced by scripts/test (after pytest): the VS Code extension in editors/vscode. Installs its
# exact packages (package-lock.json; npm's cache in .cache/npm), checks that the TypeScript types
# match schemas/, type-checks (strict), runs its tests (unit, and integration against a real orcad
# through a real `orca bridge`: `orca` from .venv) and packages the .vsix (no marketplace needed).

EXTENSION="$ROOT/editors/vscode"
if ! command -v npm >/dev/null 2>&1; then
  echo "the VS Code extension's tests need Node.js and npm; none on PATH" >&2
  exit 1
fi
echo "==> VS Code extension: npm ci, check:types, tsc --noEmit, npm test, vsce package"
(
  cd "$EXTENSION"
  npm ci --cache "$ROOT/.cache/npm" --prefer-offline --no-audit --no-fund --loglevel=error
  npm run --silent check:types
  npx --no-install tsc -p . --noEmit
  npm test --silent
  VSIX="$EXTENSION/orca-vscode-$(node -p 'require("./package.json").version').vsix"
  npm run --silent package -- --out "$VSIX" >"$ROOT/.cache/vsce.log" 2>&1 ||
    { cat "$ROOT/.cache/vsce.log" >&2; exit 1; }
  echo "==> the extension: $VSIX (install with: code --install-extension $VSIX)"
)
