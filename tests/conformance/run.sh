#!/usr/bin/env bash
# Run the pinned MCP conformance suite (server mode) against URL.
#
#   tests/conformance/run.sh URL [EXTRA ARGS...]
#   tests/conformance/run.sh --install      (only install the pinned tooling)
#
# EXTRA ARGS go to `conformance server` as they are, e.g. --scenario NAME, --suite all,
# --expected-failures tests/conformance/expected-failures.yml, -o DIR, --verbose.
# Installs the pinned tooling first (npm ci from package-lock.json; npm install when there is no
# lock file yet), then runs the suite with Node 22 (from the `node` npm package) first on PATH.
# Prints the suite's output (one summary line per scenario at the end); the exit code is the suite's.
# CONFORMANCE_SUITE=2026 runs the 0.2.x prerelease (npm alias `conformance-2026`, pinned
# exactly: the registry's `latest` is still 0.1.x) instead, e.g. with --requirements 2026-07-28.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [[ $# -lt 1 || ( "$1" == -* && "$1" != --install ) ]]; then
    echo "usage: $0 URL [EXTRA ARGS for 'conformance server'] | $0 --install" >&2
    exit 2
fi
url="$1"
shift

# Relative paths in EXTRA ARGS stay relative to the caller's directory: only npm runs in $here.
stamp="$here/node_modules/.package-lock.json"
if [[ ! -x "$here/node_modules/node/bin/node" || ! -e "$here/node_modules/conformance-2026/dist/index.js" || ! -e "$stamp" \
    || "$here/package.json" -nt "$stamp" || "$here/package-lock.json" -nt "$stamp" ]]; then
    if [[ -e "$here/package-lock.json" ]]; then
        (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) >&2
    else
        (cd "$here" && npm install --no-audit --no-fund --loglevel=error) >&2
    fi
fi

if [[ "$url" == --install ]]; then
    exit 0
fi

export PATH="$here/node_modules/node/bin:$here/node_modules/.bin:$PATH"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [[ "$node_major" -lt 22 ]]; then
    echo "run.sh: expected Node >= 22 from node_modules/node, got $(node --version)" >&2
    exit 2
fi

# By path: both packages name their command `conformance`, so node_modules/.bin holds only one.
suite=(node "$here/node_modules/@modelcontextprotocol/conformance/dist/index.js")
if [[ "${CONFORMANCE_SUITE:-}" == 2026 ]]; then
    suite=(node "$here/node_modules/conformance-2026/dist/index.js")
fi
set +e
"${suite[@]}" server --url "$url" "$@"
rc=$?
set -e
exit "$rc"
