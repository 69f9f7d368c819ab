#!/usr/bin/env bash
# Rebuild the prebuilt JupyterLab extension in ../labextension (committed; shipped by the wheel).
# Needs Node 18+ and the Python `jupyterlab` package (its staging directory is the "core").
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --loglevel=error
core="$(python3 -c 'import jupyterlab, os; print(os.path.join(os.path.dirname(jupyterlab.__file__), "staging"))')"
node node_modules/@jupyterlab/builder/lib/build-labextension.js --core-path "$core" .
cp install.json ../labextension/install.json
