#!/usr/bin/env bash
# Builds the DocC catalog (Sources/BaldurCache/Documentation.docc) with the
# toolchain's own docc, no plugin dependency: symbol graphs from the
# compiler, then `docc convert`, failing on any warning (an unresolved
# symbol or article link, a malformed directive). Output: .build/docs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_packages libhiredis-dev libssl-dev

# The module's public symbols (swift-symbolgraph-extract, run on every call).
swift package dump-symbol-graph --minimum-access-level public >/dev/null
graphs=.build/docs-symbol-graphs
rm -rf "$graphs" .build/docs
mkdir -p "$graphs"
cp "$(swift build --show-bin-path)/../symbolgraph/BaldurCache.symbols.json" "$graphs/"
docc=$(dirname "$(readlink -f "$(command -v swift)")")/docc
"$docc" convert Sources/BaldurCache/Documentation.docc \
    --additional-symbol-graph-dir "$graphs" \
    --fallback-display-name BaldurCache --fallback-bundle-identifier org.baldur.BaldurCache \
    --output-path .build/docs --warnings-as-errors
log "documentation built in .build/docs ($(find .build/docs -name '*.json' | wc -l) pages)"
