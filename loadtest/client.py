"""Simulated clinicians: asyncio + aiohttp, each with its own session, as a browser would behave.

One item is: the item page (the rating form), ``GET`` its chart from the chart's own URL unless this clinician
fetched that URL before, then ``POST`` the rating, which answers with the next item's page (the submit hands it out;
its ``Content-Location`` names it). ``GET /evaluation/queue/<study>/next/`` and the item page's own ``GET`` are asked
only for the first item, and when a submit redirects to the queue's page (its end, a gate). A rating counts as
*acknowledged* only when the submit answered with another item's page, or a redirect away from its own form; the
database is compared with the acknowledged set after the run.

The client shares the server's cores, so it is kept cheap: aiohttp (0.7 ms of CPU per rated item against a plain
server, httpx 6.1: docs/load-and-faults.md), and a chart is checked as the gzip body it is, not
inflated (that is the browser's work, on the clinician's machine).
"""

import asyncio
import random
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field

import aiohttp
from multidict import CIMultiDictProxy

ENDPOINTS = ("login", "next", "item_page", "chart", "submit")
ITEM_URL = re.compile(r"/evaluation/items/(\d+)/$")
CHART_URL = re.compile(rb'data-minute-figure-url="([^"]+)"')
TIMEOUT_S = 30.0


GZIP_MAGIC = b"\x1f\x8b"


def shared_client(max_connections: int) -> aiohttp.ClientSession:
    """One connection pool for all the clinicians; it keeps no cookies (each clinician holds their own), follows no
    redirect and does not inflate what comes gzipped."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_connections, limit_per_host=0, keepalive_timeout=5.0),
        timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
    )


@dataclass
class Reply:
    status_code: int
    headers: CIMultiDictProxy[str]
    content: bytes


@dataclass
class Recorder:
    """Every request's start time, latency and outcome, per endpoint; and the acknowledged ratings."""

    samples: dict = field(default_factory=lambda: defaultdict(list))  # endpoint -> [(start_s, latency_ms, ok)]
    errors: dict = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))  # endpoint -> reason -> count
    acknowledged: set = field(default_factory=set)  # assignment ids whose submit was acknowledged
    unconfirmed: set = field(default_factory=set)  # submits that never got an answer (may or may not have committed)
    item_page_bytes: list = field(default_factory=list)
    chart_bytes: list = field(default_factory=list)

    def add(self, endpoint: str, started: float, latency_ms: float, ok: bool, reason: str = "") -> None:
        self.samples[endpoint].append((started, latency_ms, ok))
        if not ok:
            self.errors[endpoint][reason] += 1


@dataclass
class Clinician:
    client: aiohttp.ClientSession
    base_url: str
    study_id: int
    dimensions: dict  # key -> points
    recorder: Recorder
    username: str
    session: str | None = None  # a ready session key, or None to log in through the form
    password: str = ""
    cookies: dict = field(default_factory=dict)
    assignment_id: int | None = None
    next_location: str | None = None  # where the last acknowledged submit led: the next item's page, or the queue's
    next_page: Reply | None = None  # that page, when the submit answered with it (not a redirect)
    rng: random.Random = field(default_factory=random.Random)
    cached_charts: set = field(default_factory=set)  # chart URLs this clinician's browser holds

    def _headers(self) -> dict:
        headers = {
            "X-Forwarded-Proto": "https",
            "Origin": f"https://{self.base_url.split('://', 1)[1]}",
            "Accept-Encoding": "gzip, deflate",  # as every browser
        }
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        return headers

    async def _request(self, endpoint: str, method: str, path: str, data: dict | None = None) -> Reply | None:
        started = time.perf_counter()
        headers = self._headers()
        if data:
            headers["Referer"] = f"https://{self.base_url.split('://', 1)[1]}{path}"
        try:
            async with self.client.request(
                method, self.base_url + path, data=data, headers=headers, allow_redirects=False
            ) as response:
                reply = Reply(response.status, response.headers, await response.read())
        except (aiohttp.ClientError, TimeoutError) as error:
            self.recorder.add(endpoint, started, (time.perf_counter() - started) * 1000, False, type(error).__name__)
            return None
        latency_ms = (time.perf_counter() - started) * 1000
        for header in reply.headers.getall("Set-Cookie", []):
            name, _, rest = header.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        ok = reply.status_code in (200, 302)
        self.recorder.add(endpoint, started, latency_ms, ok, "" if ok else f"HTTP {reply.status_code}")
        return reply if ok else None

    async def login(self) -> bool:
        if self.session:
            self.cookies["sessionid"] = self.session
            return True
        if await self._request("login", "GET", "/login/") is None:
            return False
        response = await self._request(
            "login",
            "POST",
            "/login/",
            {
                "username": self.username,
                "password": self.password,
                "csrfmiddlewaretoken": self.cookies.get("csrftoken", ""),
            },
        )
        return response is not None and response.status_code == 302 and "sessionid" in self.cookies

    async def open_next_item(self) -> bool:
        """Open the next item's page (with the chart payload): the one the last submit answered with or redirected
        to, else the one the queue hands out; False when the queue is empty."""
        location, self.next_location = self.next_location, None
        page, self.next_page = self.next_page, None
        match = ITEM_URL.search(location) if location else None
        if match is None:
            response = await self._request("next", "GET", f"/evaluation/queue/{self.study_id}/next/")
            if response is None or response.status_code != 302:
                self.assignment_id = None
                return False
            match = ITEM_URL.search(response.headers["location"])
        if match is None:
            self.assignment_id = None
            return False
        if page is None:  # else the submit answered with this page (evaluation.views._next_item_page)
            page = await self._request("item_page", "GET", match.group(0))
        chart_url = CHART_URL.search(page.content) if page is not None else None
        if chart_url is None:
            self.assignment_id = None
            return False
        self.recorder.item_page_bytes.append(len(page.content))
        if chart_url.group(1) not in self.cached_charts:
            chart = await self._request("chart", "GET", chart_url.group(1).decode())
            if chart is None or not _is_chart(chart):
                self.assignment_id = None
                return False
            self.cached_charts.add(chart_url.group(1))
            self.recorder.chart_bytes.append(len(chart.content))
        self.assignment_id = int(match.group(1))
        return True

    async def submit(self) -> bool:
        """Rate the open item; one safe retry (the submit is idempotent) if the first attempt gets no answer."""
        if self.assignment_id is None:
            return False
        form = {f"score-{key}": str(self.rng.choice(points)) for key, points in self.dimensions.items()}
        form.update(
            {
                "csrfmiddlewaretoken": self.cookies.get("csrftoken", ""),
                "time_spent_s": str(self.rng.randint(20, 40)),
                "comment": "",
            }
        )
        for _ in range(2):
            response = await self._request("submit", "POST", f"/evaluation/items/{self.assignment_id}/submit/", form)
            if response is not None:
                # A redirect, or the next item's page itself, named by its Content-Location.
                location = response.headers.get("location" if response.status_code == 302 else "content-location", "")
                item = ITEM_URL.search(location)
                # Saved: on to another item's page, or to the queue's page; not back to this form (refused) nor to
                # the log-in page (a lost session).
                if (item is not None and int(item.group(1)) != self.assignment_id) or location.endswith(
                    f"/queue/{self.study_id}/next/"
                ):
                    self.next_location = location  # the next item's page, or the queue's
                    self.next_page = response if response.status_code == 200 else None
                    self.recorder.acknowledged.add(self.assignment_id)
                    self.recorder.unconfirmed.discard(self.assignment_id)
                    self.assignment_id = None
                    return True
                self.recorder.errors["submit"]["not saved (back to the form, or no item's page)"] += 1
                return False
            self.recorder.unconfirmed.add(self.assignment_id)
        return False


def _is_chart(reply: Reply) -> bool:
    """The chart's JSON, gzipped as the server sends it to a browser that takes gzip (or plain)."""
    if reply.headers.get("Content-Encoding") == "gzip":
        return reply.content.startswith(GZIP_MAGIC)
    return reply.content.startswith(b"{")


async def open_loop(clinicians: list[Clinician], *, period_s: float, duration_s: float) -> float:
    """Each clinician opens an item every ``period_s`` (first ones spread over one period), rates it at the
    next tick and opens the following one; the schedule never waits for the server. Returns the start time."""
    started = time.perf_counter()

    async def run(clinician: Clinician, offset_s: float) -> None:
        await asyncio.sleep(offset_s)
        if not await clinician.login():
            return
        tick = 0
        while True:
            if clinician.assignment_id is not None:
                await clinician.submit()
            if time.perf_counter() - started > duration_s:
                return  # an overloaded server must not stretch the run: no new item after the end
            await clinician.open_next_item()
            tick += 1
            wake = started + offset_s + tick * period_s
            if wake - started > duration_s:
                return
            await asyncio.sleep(max(0.0, wake - time.perf_counter()))

    await asyncio.gather(
        *(run(clinician, period_s * index / len(clinicians)) for index, clinician in enumerate(clinicians))
    )
    return started


async def closed_loop(clinicians: list[Clinician], *, duration_s: float) -> float:
    """Each clinician opens and rates items back to back, with no think time, for ``duration_s``."""
    started = time.perf_counter()

    async def run(clinician: Clinician) -> None:
        if not await clinician.login():
            return
        while time.perf_counter() - started < duration_s:
            if not await clinician.open_next_item():
                await asyncio.sleep(0.5)  # an empty queue or an error: do not spin
                continue
            await clinician.submit()

    await asyncio.gather(*(run(clinician) for clinician in clinicians))
    return started
