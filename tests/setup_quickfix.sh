#!/usr/bin/env bash
# QuickFIX for the FIX acceptor's tests (tests/gateway/test_fix_quickfix.py), into .venv:
# the quickfix package (PyPI ships its source only: building it takes a few minutes) and the
# FIX 4.4 data dictionary it validates with (spec/FIX44.xml of the same source package),
# copied to .venv/share/quickfix/FIX44.xml. Idempotent: what is there is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=1.16.0
PY=.venv/bin/python
DEST="$($PY -c 'import sys; print(sys.prefix)')/share/quickfix"
if ! $PY -c "import quickfix" 2>/dev/null; then
    echo "setup_quickfix: building quickfix $VERSION (a few minutes)"
    .venv/bin/pip install --quiet "quickfix==$VERSION"
fi
if [ ! -f "$DEST/FIX44.xml" ]; then
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    .venv/bin/pip download --quiet --no-binary :all: --no-deps "quickfix==$VERSION" -d "$tmp"
    tar xzf "$tmp/quickfix-$VERSION.tar.gz" -C "$tmp" "quickfix-$VERSION/spec/FIX44.xml"
    mkdir -p "$DEST"
    cp "$tmp/quickfix-$VERSION/spec/FIX44.xml" "$DEST/FIX44.xml"
fi
echo "setup_quickfix: quickfix $($PY -c 'import importlib.metadata as m; print(m.version("quickfix"))') and $DEST/FIX44.xml ready"
