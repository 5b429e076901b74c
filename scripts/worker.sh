#!/usr/bin/env bash
# Production task worker: sends, re-sends, webhook events and receipts, from the queue
# TASKS_BACKEND names (README, "Background work"), with recovery of what a dead worker
# left. The Procfile's worker:, compose.yaml's worker and deploy/k8s/worker.yaml run it;
# `make run` starts the same command beside the development server. SIGTERM: the task in
# hand finishes (or is recorded as unknown by the next worker's recovery if killed).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
[ -x .venv/bin/python ] && PYTHON=.venv/bin/python
exec "$PYTHON" manage.py run_worker "$@"
