"""TASKS_BACKEND=rq end to end, out of process: the service under scripts/serve.sh and
``manage.py run_worker`` (which runs RQ's worker with its scheduler) share Redis as the
queue; the Evolution double downloads the short link. A retry (instance not connected,
then connected) goes through RQ's scheduler (``run_after``)."""

from __future__ import annotations

import time

import httpx
from django.conf import settings

from tests.evolution_double import EvolutionDouble
from tests.service_process import PROXIED, production_environment, serve_sh
from tests.worker_process import kill, start_worker


def test_rq_queue_sends_and_retries(tmp_path, voice_note, redis_client):
    with EvolutionDouble(api_key="evo", instance="mc-rq") as evolution:
        evolution.instance_state = "close"  # the first attempt must be retried
        env = production_environment(tmp_path)
        env.update(
            PUBLIC_BASE_URL=f"http://127.0.0.1:{env['PORT']}",
            TASKS_BACKEND="rq",
            TASKS_REDIS_URL=settings.REDIS_URL,
            EVOLUTION_API_URL=evolution.url,
            EVOLUTION_API_KEY="evo",
            EVOLUTION_INSTANCE="mc-rq",
            MESSAGE_SEND_DEADLINE="60",
            MESSAGE_RETRY_BASE="0.5",
            MESSAGE_RETRY_MAX="1",
        )
        with serve_sh(env, tmp_path / "serve.log") as service:
            worker = start_worker(env, tmp_path / "worker.log")
            try:
                headers = {**PROXIED, "Authorization": f"Bearer {service.api_key()}"}
                with httpx.Client(base_url=service.url, headers=headers, timeout=30) as api:
                    created = api.post(
                        "/api/attachments/", files={"file": ("v.ogg", voice_note)}
                    ).json()
                    queued = api.post(
                        "/api/messages/",
                        json={"number": "5511999990000", "attachment_id": created["id"]},
                    )
                    assert queued.status_code == 202, queued.text
                    location = queued.headers["Location"].replace("https://", "http://")

                    def state() -> dict:
                        return api.get(location).json()

                    deadline = time.monotonic() + 60
                    # The first attempt failed (instance closed) and a retry is scheduled.
                    while time.monotonic() < deadline:
                        now = state()
                        if now["attempts"] >= 1 and now["status"] == "queued":
                            break
                        time.sleep(0.05)
                    evolution.instance_state = "open"
                    while state()["status"] != "sent" and time.monotonic() < deadline:
                        time.sleep(0.1)
                    final = state()
            finally:
                kill(worker)
        log = (tmp_path / "worker.log").read_text()
        assert final["status"] == "sent", (final, log[-3000:])
        assert final["attempts"] >= 2, final  # the retry went through RQ's scheduler
        assert evolution.processed_sends == 1
        assert evolution.sent[0]["download_status"] == 200
        assert "rq.worker" in log or "RQ" in log or "default" in log
