#!/usr/bin/env bash
# Every test: installs the deploy tools (helm, kubectl, kubernetes-validate into target/tools),
# runs `cargo test` (engine, server, chart rendering), then the offline deploy checks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-tools.sh >/dev/null
cargo test
bash scripts/check-deploy.sh
