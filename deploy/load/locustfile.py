"""The old app's load test, on this service's routes (issue 12, part 2).

Two kinds of user:

- ``OldAppUser``: the old Streamlit app's mix, as its scaling guide ran it. Per task it picks,
  by weight, 3 x (``GET /`` then ``POST /run_simulation`` with a random request in the guide's
  ranges), 1 x ``GET /health``, 1 x ``GET /results``, and waits 1-3 s between tasks.
  ``/run_simulation`` waits for the job and answers 200; if the job outlasts
  ``RUN_SIMULATION_WAIT_SECS`` it answers 202 + ``Location``, which is long-polled here until the
  job ends, so the one request counted ("POST /run_simulation (final)") is the final answer,
  timed from the POST.
- ``SubmitAndPollUser``: what a new client does: ``POST /simulations`` (202 + ``Location``),
  then ``GET /results/{id}?wait=N`` until the job ends. Only the final answer is counted, as one
  request named "POST /simulations -> GET /results/{id}?wait (final)", timed from the submit;
  the intermediate answers are not requests a user waits on.

Four old-app users to one new-client user (``weight``): the issue names the mix but not the
share of the new client, so most of the load is the guide's.

Settings (environment): ``LOAD_API_KEY`` (default: the local key in ``.run/api-key``, made by
``deploy/scripts/up``), ``LOAD_POLL_WAIT_SECS`` (the ``?wait=`` of a long-poll, default 30).
``deploy/load/run`` starts the stack with rate limits sized for this load; see
docs/operations.md, "Capacity planning".
"""

import os
import random
import time
from pathlib import Path

import requests
from locust import HttpUser, between, task

# The guide's ranges (issue 12): tests/it/deploy_files/load.rs checks them against the issue.
STARTING_PORTFOLIO = (500_000, 2_000_000)
MONTHLY_SPENDING = (3_000, 8_000)
N_SCENARIOS = (100, 500, 1000)
YEARS = (20, 30, 40)
WAIT_SECS = (1, 3)
OLD_APP_SHARE = 4
NEW_CLIENT_SHARE = 1

TERMINAL = ("succeeded", "failed", "cancelled")
POLL_WAIT_SECS = int(os.environ.get("LOAD_POLL_WAIT_SECS", "30"))


def api_key():
    key = os.environ.get("LOAD_API_KEY")
    if key:
        return key.strip()
    path = Path(__file__).resolve().parents[2] / ".run" / "api-key"
    try:
        return path.read_text().strip()
    except OSError as e:
        raise SystemExit(f"no API key: set LOAD_API_KEY or run deploy/scripts/up ({e})")


KEY = api_key()


def old_app_request():
    """A request in the old app's ranges: whole dollars, no seed (each is a new draw)."""
    return {
        "starting_portfolio": random.randint(*STARTING_PORTFOLIO),
        "monthly_spending": random.randint(*MONTHLY_SPENDING),
        "n_scenarios": random.choice(N_SCENARIOS),
        "years": random.choice(YEARS),
    }


class FinalAnswer:
    """Follows a job to its end on a plain ``requests`` session (so locust records none of the
    intermediate answers), then fires one request event for the whole wait."""

    def __init__(self, user):
        self.user = user
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {KEY}"

    def url(self, path):
        return self.user.host.rstrip("/") + path

    def submit(self, path, name, timeout):
        """POSTs a new old-app request to ``path`` and follows the job to its end, recording
        one event named ``name`` (a failed POST is recorded as that event's failure)."""
        started = time.perf_counter()
        try:
            first = self.session.post(self.url(path), json=old_app_request(), timeout=timeout)
        except requests.RequestException as e:
            self.user.environment.events.request.fire(
                request_type="POST",
                name=name,
                response_time=(time.perf_counter() - started) * 1000,
                response_length=0,
                response=None,
                context={},
                exception=e,
            )
            return
        self.follow(name, started, first)

    def follow(self, name, started, response):
        """``response`` is the first answer (200 with the job, or 202 + Location); long-polls
        ``Location`` until the job is terminal and records one event named ``name``."""
        exception = None
        length = len(response.content)
        try:
            while True:
                if response.status_code == 200:
                    status = response.json().get("status")
                    if status == "succeeded":
                        break
                    if status in TERMINAL:
                        raise RuntimeError(f"job {status}")
                    location = response.request.path_url.split("?")[0]
                elif response.status_code == 202:
                    location = response.headers.get("Location")
                    if not location:
                        raise RuntimeError("202 without Location")
                else:
                    raise RuntimeError(f"{response.status_code}: {response.text[:200]}")
                response = self.session.get(
                    self.url(location), params={"wait": POLL_WAIT_SECS}, timeout=POLL_WAIT_SECS + 30
                )
                length += len(response.content)
        except (requests.RequestException, RuntimeError, ValueError) as e:
            exception = e
        self.user.environment.events.request.fire(
            request_type="POST",
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=length,
            response=response,
            context={},
            exception=exception,
        )


class OldAppUser(HttpUser):
    """The old app's user: the page, a synchronous simulation, health, the list."""

    weight = OLD_APP_SHARE
    wait_time = between(*WAIT_SECS)

    def on_start(self):
        self.client.headers["Authorization"] = f"Bearer {KEY}"
        self.final = FinalAnswer(self)

    @task(3)
    def page_and_run_simulation(self):
        self.client.get("/", name="GET /")
        self.final.submit("/run_simulation", "POST /run_simulation (final)", timeout=90)

    @task(1)
    def health(self):
        self.client.get("/health", name="GET /health")

    @task(1)
    def results(self):
        self.client.get("/results", name="GET /results")


class SubmitAndPollUser(HttpUser):
    """The new client: submit, then long-poll the result."""

    weight = NEW_CLIENT_SHARE
    wait_time = between(*WAIT_SECS)

    def on_start(self):
        self.final = FinalAnswer(self)

    @task
    def submit_and_long_poll(self):
        name = "POST /simulations -> GET /results/{id}?wait (final)"
        self.final.submit("/simulations", name, timeout=30)
