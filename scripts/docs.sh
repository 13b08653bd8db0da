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
# Every public symbol declared in Sources/BaldurCache has a doc comment
# (symbols inherited from other modules' extensions are theirs to document).
python3 - "$graphs/BaldurCache.symbols.json" "$PWD/Sources/BaldurCache/" <<'PY'
import json, sys
graph, ours = json.load(open(sys.argv[1])), "file://" + sys.argv[2]
missing = sorted({
    f"{s['location']['uri'][len(ours):]}:{s['location']['position']['line'] + 1}: {'.'.join(s['pathComponents'])}"
    for s in graph["symbols"]
    if s["accessLevel"] in ("public", "open") and not s.get("docComment")
    and s.get("location", {}).get("uri", "").startswith(ours)
})
public = sum(1 for s in graph["symbols"] if s["accessLevel"] in ("public", "open"))
if missing:
    print(f"{len(missing)} public symbols without a doc comment:", *missing, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print(f"docs.sh: all {public} public symbols have a doc comment")
PY
docc=$(dirname "$(readlink -f "$(command -v swift)")")/docc
"$docc" convert Sources/BaldurCache/Documentation.docc \
    --additional-symbol-graph-dir "$graphs" \
    --fallback-display-name BaldurCache --fallback-bundle-identifier org.baldur.BaldurCache \
    --output-path .build/docs --warnings-as-errors
log "documentation built in .build/docs ($(find .build/docs -name '*.json' | wc -l) pages)"
