"""The RunComfy simulator over real HTTP: the protocol of API.md, its variations and its faults."""

from __future__ import annotations

import hashlib
import json
import math
import re
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from batchrun import protocol
from batchrun.sim import Engine, Faults, Latency, SimConfig, Simulator
from batchrun.sim.files import clip

T2V = "kling/kling-3.0/pro/text-to-video"
I2V = "kling/kling-3.0/standard/image-to-video"
IMAGE = "https://example.com/start.png"
MakeSim = Callable[..., Simulator]


def client_for(sim: Simulator, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token or sim.config.token}"}
    return httpx.Client(base_url=sim.base_url, headers=headers, timeout=10)


def submit(client: httpx.Client, body: dict[str, Any] | None = None, model: str = T2V) -> str:
    answer = client.post(protocol.submit_path(model), json=body or {"prompt": "a cat on a skateboard"})
    assert answer.status_code == 200, answer.text
    return answer.json()["request_id"]


def status_of(client: httpx.Client, request_id: str) -> dict[str, Any]:
    answer = client.get(protocol.status_path(request_id))
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_terminal(client: httpx.Client, request_id: str, polls: int = 2000) -> dict[str, Any]:
    """Poll the result endpoint (bounded) until the job is terminal."""
    for _ in range(polls):
        body = client.get(protocol.result_path(request_id)).json()
        if body["status"] in protocol.TERMINAL_STATUSES:
            return body
    raise AssertionError(f"job {request_id} never finished")


# -- lifecycle ---------------------------------------------------------------------------------


def test_full_lifecycle_over_http(simulator: Simulator, sim_client: httpx.Client) -> None:
    """A submitted job goes queue -> progress -> completed and its video downloads intact."""
    answer = sim_client.post(protocol.submit_path(T2V), json={"prompt": "a cat", "duration": 5})
    assert answer.status_code == 200
    body = answer.json()
    rid = body["request_id"]
    assert body["status_url"] == simulator.base_url + protocol.status_path(rid)
    assert body["result_url"] == simulator.base_url + protocol.result_path(rid)
    assert body["cancel_url"] == simulator.base_url + protocol.cancel_path(rid)
    assert status_of(sim_client, rid)["status"] in (protocol.IN_QUEUE, protocol.IN_PROGRESS, protocol.COMPLETED)

    result = wait_terminal(sim_client, rid)
    assert result["status"] == protocol.COMPLETED
    assert "created_at" in result and "finished_at" in result and "error" not in result
    url = result["output"]["video"]
    assert url == f"http://localhost:{simulator.port}/files/{rid}/output.mp4"

    video = httpx.get(url)  # no token: result URLs are public
    assert video.status_code == 200
    assert video.headers["content-type"] == "video/mp4"
    assert int(video.headers["content-length"]) == len(video.content)
    assert video.content.startswith(clip()) and video.content[4:8] == b"ftyp"
    assert rid.encode() in video.content[len(clip()) :]
    assert simulator.served_files() == {url: hashlib.sha256(video.content).hexdigest()}

    stats = simulator.stats()
    assert stats.jobs_created == 1 and stats.completed == 1 and stats.unfinished_now == 0
    assert stats.requests["submit"] == 1 and stats.requests["file"] == 1
    assert stats.authorization_headers_on_files == 0


def test_each_job_gets_distinct_file_bytes(simulator: Simulator, sim_client: httpx.Client) -> None:
    """Two jobs' videos differ, so a sha256 check can tell them apart."""
    urls = []
    for prompt in ("one", "two"):
        rid = submit(sim_client, {"prompt": prompt})
        urls.append(wait_terminal(sim_client, rid)["output"]["video"])
    digests = {hashlib.sha256(httpx.get(u).content).hexdigest() for u in urls}
    assert len(digests) == 2 and set(simulator.served_files().values()) == digests


def test_queue_positions_fifo_with_capacity_one(make_simulator: MakeSim) -> None:
    """With one slot, later jobs wait in_queue with 1-based FIFO positions that move up."""
    sim = make_simulator(latency="manual", capacity=1)
    with client_for(sim) as client:
        a, b, c = (submit(client, {"prompt": p}) for p in "abc")
        assert status_of(client, a)["status"] == protocol.IN_PROGRESS
        assert "queue_position" not in status_of(client, a)
        assert (status_of(client, b)["queue_position"], status_of(client, c)["queue_position"]) == (1, 2)
        sim.finish(a)
        assert status_of(client, a)["status"] == protocol.COMPLETED
        assert status_of(client, b)["status"] == protocol.IN_PROGRESS
        assert status_of(client, c) == {
            "request_id": c,
            "status": protocol.IN_QUEUE,
            "status_url": sim.base_url + protocol.status_path(c),
            "result_url": sim.base_url + protocol.result_path(c),
            "queue_position": 1,
        }
        assert sim.stats().max_unfinished == 3


def test_cancel_queued_but_not_running(make_simulator: MakeSim) -> None:
    """Only a queued job can be cancelled; a running one answers not_cancellable and completes."""
    sim = make_simulator(latency="manual", capacity=1)
    with client_for(sim) as client:
        running, queued = submit(client), submit(client, {"prompt": "second"})
        answer = client.post(protocol.cancel_path(queued)).json()
        assert answer == {"request_id": queued, "status": protocol.CANCELLED, "outcome": protocol.OUTCOME_CANCELLED}
        answer = client.post(protocol.cancel_path(running)).json()
        assert answer["outcome"] == protocol.OUTCOME_NOT_CANCELLABLE and answer["status"] == protocol.IN_PROGRESS
        sim.finish()
        assert status_of(client, running)["status"] == protocol.COMPLETED
        assert status_of(client, queued)["status"] == protocol.CANCELLED
        assert "output" not in client.get(protocol.result_path(queued)).json()
        again = client.post(protocol.cancel_path(running)).json()
        assert again["outcome"] == protocol.OUTCOME_NOT_CANCELLABLE
        stats = sim.stats()
        assert (stats.cancelled, stats.completed, stats.unfinished_now) == (1, 1, 0)


def test_failure_rate_one_fails_every_job_with_an_error(make_simulator: MakeSim) -> None:
    """A failed generation reports status failed, an error message and no output."""
    sim = make_simulator(failure_rate=1.0, seed=1)
    with client_for(sim) as client:
        rid = submit(client)
        result = wait_terminal(client, rid)
        assert result["status"] == protocol.FAILED
        assert isinstance(result["error"], str) and result["error"]
        assert "output" not in result
        assert status_of(client, rid)["status"] == protocol.FAILED
        assert client.get(f"/files/{rid}/output.mp4").status_code == 404
    assert sim.stats().failed == 1


def test_manual_finish_can_fail_a_job(make_simulator: MakeSim) -> None:
    """Tests can end a manual-latency job as failed."""
    sim = make_simulator(latency="manual")
    with client_for(sim) as client:
        rid = submit(client)
        sim.finish(rid, fail=True)
        assert client.get(protocol.result_path(rid)).json()["status"] == protocol.FAILED


def test_unfinished_job_result_has_status_and_no_output(make_simulator: MakeSim) -> None:
    """The result endpoint can be polled: 200 with the current status and no output."""
    sim = make_simulator(latency="manual")
    with client_for(sim) as client:
        rid = submit(client)
        answer = client.get(protocol.result_path(rid))
        assert answer.status_code == 200
        body = answer.json()
        assert body["status"] == protocol.IN_PROGRESS and "output" not in body and "finished_at" not in body
        assert client.get(f"/files/{rid}/output.mp4").status_code == 404


# -- authentication, validation, errors --------------------------------------------------


def test_token_checks(simulator: Simulator, sim_client: httpx.Client) -> None:
    """A wrong token answers 401/401001, a missing one 400004; result files need no token."""
    with client_for(simulator, token="wrong") as bad:
        answer = bad.post(protocol.submit_path(T2V), json={"prompt": "x"})
        assert answer.status_code == 401 and answer.json()["error_code"] == protocol.ERR_UNAUTHORIZED
        assert bad.get(protocol.status_path("nope")).json()["error_code"] == protocol.ERR_UNAUTHORIZED
    missing = httpx.post(simulator.base_url + protocol.submit_path(T2V), json={"prompt": "x"})
    assert missing.status_code == 400 and missing.json()["error_code"] == protocol.ERR_TOKEN_MISSING
    rid = submit(sim_client)
    url = wait_terminal(sim_client, rid)["output"]["video"]
    assert httpx.get(url).status_code == 200
    simulator.set_token("rotated")
    assert sim_client.get(protocol.status_path(rid)).status_code == 401
    assert simulator.stats().jobs_created == 1


def test_authorization_on_file_requests_is_counted(simulator: Simulator, sim_client: httpx.Client) -> None:
    """Sending the API token to the file host is visible in stats (a client must not do it)."""
    url = wait_terminal(sim_client, submit(sim_client))["output"]["video"]
    assert httpx.get(url, headers={"Authorization": "Bearer sim-token"}).status_code == 200
    assert simulator.stats().authorization_headers_on_files == 1


def test_file_host_differs_from_api_host(simulator: Simulator, sim_client: httpx.Client) -> None:
    """Result URLs name another host than the API, so clients can scope their token."""
    url = httpx.URL(wait_terminal(sim_client, submit(sim_client))["output"]["video"])
    assert url.host == "localhost" and httpx.URL(simulator.base_url).host == "127.0.0.1"
    assert url.port == simulator.port


@pytest.mark.parametrize(
    ("model", "body", "loc", "kind"),
    [
        (T2V, {"prompt": "x", "colour": "red"}, ["body", "colour"], "extra_forbidden"),
        (T2V, {"prompt": "x", "duration": 16}, ["body", "duration"], "less_than_equal"),
        (T2V, {"prompt": "x", "duration": 2}, ["body", "duration"], "greater_than_equal"),
        (T2V, {"prompt": "x", "duration": 5.5}, ["body", "duration"], "int_from_float"),
        (T2V, {"prompt": "x", "cfg_scale": "high"}, ["body", "cfg_scale"], "float_type"),
        (T2V, {"prompt": "x", "cfg_scale": 1.5}, ["body", "cfg_scale"], "less_than_equal"),
        (T2V, {"prompt": "x", "aspect_ratio": "4:3"}, ["body", "aspect_ratio"], "enum"),
        (T2V, {"prompt": "x", "sound": "yes"}, ["body", "sound"], "bool_type"),
        (T2V, {"duration": 5}, ["body", "prompt"], "missing"),
        (T2V, {"prompt": "x", "multi_prompt": [{"prompt": "a", "duration": 3}, {"prompt": "b", "duration": 3}]},
         ["body", "multi_prompt"], "value_error"),
        (T2V, {"prompt": "x", "multi_prompt": [{"prompt": "a", "duration": 2}]}, ["body", "multi_prompt", 0, "duration"],
         "greater_than_equal"),
        (T2V, {"prompt": "x", "multi_prompt": [{"prompt": "a", "seconds": 5}]}, ["body", "multi_prompt", 0, "seconds"],
         "extra_forbidden"),
        (I2V, {"prompt": "x"}, ["body", "start_image_url"], "missing"),
        (I2V, {"prompt": "x", "start_image_url": IMAGE, "multi_prompt": [{"prompt": "a", "duration": 5}]},
         ["body", "multi_prompt"], "value_error"),  # image-to-video's default duration is 10
        (I2V, {"prompt": "x", "start_image_url": IMAGE, "elements": [{"frontal_image_url": "file:///etc/passwd"}]},
         ["body", "elements", 0, "frontal_image_url"], "url_parsing"),
        (I2V, {"prompt": "x", "start_image_url": IMAGE, "elements": [{}, {}, {}, {}]}, ["body", "elements"], "too_long"),
    ],
)
def test_invalid_input_answers_422_with_detail(
    sim_client: httpx.Client, model: str, body: dict[str, Any], loc: list[Any], kind: str
) -> None:
    """Invalid input answers 422/422001 with a detail entry locating the field."""
    answer = sim_client.post(protocol.submit_path(model), json=body)
    assert answer.status_code == 422, answer.text
    payload = answer.json()
    assert payload["error_code"] == protocol.ERR_VALIDATION
    assert any(d["loc"] == loc and d["type"] == kind and d["msg"] for d in payload["detail"]), payload["detail"]


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (T2V, {"prompt": "x", "multi_prompt": [{"prompt": "a", "duration": 3}, {"prompt": "b"}], "duration": 8}),
        (T2V, {"prompt": "x", "multi_prompt": [{"prompt": "a"}]}),  # 5 = default segment = default total
        (T2V, {"prompt": "x", "cfg_scale": 1, "duration": 15.0, "aspect_ratio": "9:16", "sound": False}),
        (I2V, {"prompt": "x", "start_image_url": IMAGE, "multi_prompt": [{"prompt": "a", "duration": 5}] * 2,
               "elements": [{"frontal_image_url": IMAGE, "reference_image_urls": [IMAGE]}], "generate_audio": False}),
        ("kling/kling-3.0/4k/image-to-video", {"prompt": "x", "start_image_url": IMAGE, "cfg_scale": 0.25}),
    ],
)
def test_valid_input_is_accepted(sim_client: httpx.Client, model: str, body: dict[str, Any]) -> None:
    """Input that follows the published schema (defaults included) is accepted."""
    assert sim_client.post(protocol.submit_path(model), json=body).status_code == 200


def test_non_json_body_answers_422(sim_client: httpx.Client) -> None:
    """A body that is not JSON (or not an object) is a validation error, not a crash."""
    for content in (b"not json", b"", b"[1, 2]"):
        answer = sim_client.post(protocol.submit_path(T2V), content=content, headers={"content-type": "application/json"})
        assert answer.status_code == 422 and answer.json()["error_code"] == protocol.ERR_VALIDATION


def test_unknown_model_and_model_info(sim_client: httpx.Client) -> None:
    """An unknown model answers 400/400001; a known one publishes its input schema."""
    answer = sim_client.post(protocol.submit_path("kling/kling-9.9/pro/text-to-video"), json={"prompt": "x"})
    assert answer.status_code == 400 and answer.json()["error_code"] == protocol.ERR_UNKNOWN_MODEL
    info = sim_client.get(protocol.submit_path(I2V)).json()
    assert info["model_id"] == I2V and "start_image_url" in info["input_schema"]["required"]


def test_unknown_request_id_and_path(sim_client: httpx.Client) -> None:
    """Unknown request ids answer 404/404001; unknown paths a JSON 404."""
    for path in (protocol.status_path("nope"), protocol.result_path("nope")):
        answer = sim_client.get(path)
        assert answer.status_code == 404 and answer.json()["error_code"] == protocol.ERR_REQUEST_NOT_FOUND
    answer = sim_client.post(protocol.cancel_path("nope"))
    assert answer.json()["error_code"] == protocol.ERR_REQUEST_NOT_FOUND
    other = sim_client.get("/v2/whatever")
    assert other.status_code == 404 and other.headers["content-type"] == "application/json"
    assert sim_client.delete(protocol.status_path("nope")).status_code == 405


def test_balance_runs_out_and_cancel_refunds(make_simulator: MakeSim) -> None:
    """With a $2 balance ($1 per job) the third submit answers 400002; cancelling refunds."""
    sim = make_simulator(latency="manual", capacity=1, balance=2.0)
    with client_for(sim) as client:
        submit(client)
        queued = submit(client, {"prompt": "b"})
        answer = client.post(protocol.submit_path(T2V), json={"prompt": "c"})
        assert answer.status_code == 400 and answer.json() == {
            "error_code": protocol.ERR_INSUFFICIENT_BALANCE, "error_message": "insufficient balance"}
        client.post(protocol.cancel_path(queued))
        submit(client, {"prompt": "c"})
        assert sim.stats().balance == 0.0
        sim.set_balance(None)
        submit(client, {"prompt": "d"})
        assert sim.job_status(queued) == protocol.CANCELLED and sim.job_status("nope") is None
    assert sim.stats().jobs_created == 4 and sim.stats().balance is None


# -- variants ------------------------------------------------------------------------------


def test_alt_variant_spellings_and_shapes(make_simulator: MakeSim) -> None:
    """The alt variant says succeeded/canceled, omits optional fields and returns output.videos."""
    sim = make_simulator(latency="manual", capacity=1, status_variant="alt", submit_http_status=202,
                         error_message_key="message")
    with client_for(sim) as client:
        answer = client.post(protocol.submit_path(T2V), json={"prompt": "a"})
        assert answer.status_code == 202 and set(answer.json()) == {"request_id"}
        done = answer.json()["request_id"]
        queued = client.post(protocol.submit_path(T2V), json={"prompt": "b"}).json()["request_id"]
        assert status_of(client, queued) == {"request_id": queued, "status": protocol.IN_QUEUE}
        assert client.post(protocol.cancel_path(queued)).json()["status"] == protocol.CANCELED
        sim.finish(done)
        assert status_of(client, done) == {"request_id": done, "status": protocol.SUCCEEDED}
        result = client.get(protocol.result_path(done)).json()
        assert set(result) == {"request_id", "status", "output"}
        (url,) = result["output"]["videos"]
        assert httpx.get(url).status_code == 200
        error = client.get(protocol.status_path("nope")).json()
        assert error == {"error_code": protocol.ERR_REQUEST_NOT_FOUND, "message": "request nope not found"}


# -- faults ----------------------------------------------------------------------------------


def test_reset_fault_aborts_the_connection(make_simulator: MakeSim) -> None:
    """A reset fault closes the connection unanswered: httpx raises a transport error."""
    sim = make_simulator(faults="reset=1", seed=3)
    with client_for(sim) as client, pytest.raises(httpx.TransportError):
        client.get(protocol.status_path("x"))
    assert sim.stats().faults_injected["reset"] == 1


def test_lost_submit_creates_the_job_but_loses_the_answer(make_simulator: MakeSim) -> None:
    """A lost submit answer still created (and billed) a job: the duplicate risk of API.md."""
    sim = make_simulator(faults="lost_submit=1", seed=3)
    with client_for(sim) as client:
        with pytest.raises(httpx.TransportError):
            client.post(protocol.submit_path(T2V), json={"prompt": "a"})
        sim.set_faults(Faults())
        submit(client, {"prompt": "a"})
    stats = sim.stats()
    assert stats.faults_injected["lost_submit"] == 1 and stats.jobs_created == 2
    assert list(stats.submissions_by_input.values()) == [2] and stats.duplicates() == 1


def test_server_errors_and_rate_limits(make_simulator: MakeSim) -> None:
    """server_error answers 500/500001 JSON or a bare 502/503; rate_limit answers 429 (+Retry-After)."""
    sim = make_simulator(faults="server_error=1", seed=5)
    seen: set[int] = set()
    with client_for(sim) as client:
        for _ in range(40):
            answer = client.get(protocol.status_path("x"))
            seen.add(answer.status_code)
            if answer.status_code == 500:
                assert answer.json()["error_code"] == protocol.ERR_INTERNAL
            else:
                assert answer.headers["content-type"] == "text/html"
        assert seen == {500, 502, 503}
        sim.set_faults(Faults(rate_limit=1, retry_after=2.5))
        retry_afters = {client.get(protocol.status_path("x")).headers.get("retry-after") for _ in range(40)}
        assert retry_afters == {"3", None}
    stats = sim.stats()
    assert stats.faults_injected["server_error"] == 40 and stats.faults_injected["rate_limit"] == 40
    assert stats.jobs_created == 0


def test_error_inside_http_200(make_simulator: MakeSim) -> None:
    """error_200 answers HTTP 200 whose body is an error_code, not the real answer."""
    sim = make_simulator(faults="error_200=1", seed=1)
    with client_for(sim) as client:
        answer = client.post(protocol.submit_path(T2V), json={"prompt": "a"})
        assert answer.status_code == 200 and answer.json()["error_code"] == protocol.ERR_INTERNAL
        assert "request_id" not in answer.json()
    assert sim.stats().faults_injected["error_200"] == 1 and sim.stats().jobs_created == 0


def test_truncated_download_sends_fewer_bytes_than_announced(make_simulator: MakeSim) -> None:
    """A truncated download announces the full Content-Length, then the connection ends early."""
    sim = make_simulator(seed=2)
    with client_for(sim) as client:
        url = wait_terminal(client, submit(client))["output"]["video"]
    sim.set_faults(Faults(truncated_download=1))
    received = 0
    with httpx.Client() as files, pytest.raises(httpx.RemoteProtocolError):
        with files.stream("GET", url) as answer:
            announced = int(answer.headers["content-length"])
            for chunk in answer.iter_raw():
                received += len(chunk)
    assert 0 < received < announced
    assert sim.stats().faults_injected["truncated_download"] == 1
    sim.set_faults(Faults())
    assert hashlib.sha256(httpx.get(url).content).hexdigest() == sim.served_files()[url]


def test_faults_are_deterministic_with_a_seed(make_simulator: MakeSim) -> None:
    """The same seed and request sequence inject the same faults."""
    outcomes = []
    for _ in range(2):
        sim = make_simulator(faults="server_error=0.3,rate_limit=0.3", seed=42)
        with client_for(sim) as client:
            outcomes.append([client.get(protocol.status_path("x")).status_code for _ in range(30)])
    assert outcomes[0] == outcomes[1] and len(set(outcomes[0])) > 2


# -- files -----------------------------------------------------------------------------------


def test_range_requests_and_head(simulator: Simulator, sim_client: httpx.Client) -> None:
    """Range requests return exactly the asked bytes (206), bad ranges 416, HEAD no body."""
    url = wait_terminal(sim_client, submit(sim_client))["output"]["video"]
    full = httpx.get(url).content
    size = len(full)
    cases = {f"bytes={size - 100}-": full[-100:], "bytes=10-19": full[10:20], "bytes=-7": full[-7:],
             f"bytes={size - 3}-{size + 50}": full[-3:]}
    for spec, expected in cases.items():
        answer = httpx.get(url, headers={"Range": spec})
        assert answer.status_code == 206 and answer.content == expected, spec
        start = size - len(expected)
        if spec == "bytes=10-19":
            start = 10
        assert answer.headers["content-range"] == f"bytes {start}-{start + len(expected) - 1}/{size}"
    bad = httpx.get(url, headers={"Range": f"bytes={size}-"})
    assert bad.status_code == 416 and bad.headers["content-range"] == f"bytes */{size}"
    etag = httpx.head(url).headers["etag"]
    assert httpx.get(url, headers={"Range": "bytes=5-", "If-Range": etag}).status_code == 206
    assert httpx.get(url, headers={"Range": "bytes=5-", "If-Range": '"stale"'}).content == full
    head = httpx.head(url)
    assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) == size
    assert head.headers["accept-ranges"] == "bytes"
    assert simulator.stats().range_requests == len(cases) + 3


# -- HTTP plumbing -------------------------------------------------------------------------


def _raw_exchange(sim: Simulator, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_pipelined_requests_on_one_connection(simulator: Simulator) -> None:
    """Several requests sent at once on one keep-alive connection each get their answer, in order."""
    auth = f"Authorization: Bearer {simulator.config.token}\r\n"
    one = f"GET {protocol.status_path('a')} HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode()
    info = f"GET {protocol.submit_path(T2V)} HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode()
    reply = _raw_exchange(simulator, one + info + one)
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", reply) == [b"404", b"200", b"404"]


def test_malformed_request_answers_400(simulator: Simulator) -> None:
    """Garbage on the wire gets a 400 and a closed connection, and the server keeps serving."""
    reply = _raw_exchange(simulator, b"THIS IS NOT HTTP\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400")
    assert httpx.get(simulator.base_url + "/nothing").status_code == 404


def test_keep_alive_reuses_one_connection(simulator: Simulator, sim_client: httpx.Client) -> None:
    """Many requests over one httpx client share a single TCP connection."""
    ports = set()
    for _ in range(20):
        answer = sim_client.get(protocol.status_path("x"))
        ports.add(answer.extensions["network_stream"].get_extra_info("client_addr")[1])
    assert len(ports) == 1


def test_stats_count_requests_and_duplicates(simulator: Simulator, sim_client: httpx.Client) -> None:
    """Stats count requests per endpoint and identical submissions by canonical input."""
    a = submit(sim_client, {"prompt": "same", "duration": 5})
    submit(sim_client, {"duration": 5, "prompt": "same"})
    submit(sim_client, {"prompt": "other"})
    sim_client.get(protocol.status_path(a))
    sim_client.get(protocol.submit_path(T2V))
    sim_client.post(protocol.cancel_path(a))
    stats = simulator.stats()
    assert stats.requests["submit"] == 3 and stats.requests["status"] == 1
    assert stats.requests["model_info"] == 1 and stats.requests["cancel"] == 1
    canonical = json.dumps({"model": T2V, "input": {"prompt": "same", "duration": 5}}, sort_keys=True,
                           separators=(",", ":"), ensure_ascii=False)
    assert stats.submissions_by_input[hashlib.sha256(canonical.encode()).hexdigest()] == 2
    assert stats.duplicates() == 1 and stats.jobs_created == 3


# -- engine with virtual time ----------------------------------------------------------------


class VirtualClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_engine_queue_delay_capacity_and_latency_in_virtual_time() -> None:
    """Jobs wait queue_delay, start FIFO as slots free, and finish after their latency."""
    clock = VirtualClock()
    engine = Engine(SimConfig(latency=Latency(value=10), queue_delay=2, capacity=2), clock=clock)
    jobs = [engine.submit(T2V, str(i)) for i in range(3)]

    def states() -> list[tuple[str, int | None]]:
        return [(lambda f: (f[0].status, f[1]))(engine.get(j.request_id)) for j in jobs]  # type: ignore[index]

    assert states() == [(protocol.IN_QUEUE, 1), (protocol.IN_QUEUE, 2), (protocol.IN_QUEUE, 3)]
    clock.t += 2
    assert states() == [(protocol.IN_PROGRESS, None)] * 2 + [(protocol.IN_QUEUE, 1)]
    clock.t += 10  # first two finish at 1012; the third starts then and ends at 1022
    assert states() == [(protocol.COMPLETED, None)] * 2 + [(protocol.IN_PROGRESS, None)]
    assert jobs[2].started_at == 1012
    clock.t += 100
    assert states() == [(protocol.COMPLETED, None)] * 3
    assert jobs[2].finished_at == 1022
    assert engine.stats().max_unfinished == 3


def test_engine_lazy_replay_keeps_exact_times_for_thousands_of_jobs() -> None:
    """Replaying a long idle stretch gives each job the start/finish times a real queue would."""
    clock = VirtualClock()
    engine = Engine(SimConfig(latency=Latency(value=1), capacity=10), clock=clock)
    jobs = [engine.submit(T2V, str(i)) for i in range(5000)]
    clock.t += 1e6
    stats = engine.stats()
    assert stats.completed == 5000 and stats.unfinished_now == 0
    assert [j.finished_at - 1000.0 for j in jobs[::1000]] == [1.0, 101.0, 201.0, 301.0, 401.0]


def test_engine_queue_positions_close_gaps_left_by_cancels() -> None:
    """Cancelling or force-finishing a queued job moves everyone behind it up by one."""
    import random

    engine = Engine(SimConfig(latency=Latency("manual"), capacity=2), clock=VirtualClock())
    jobs = [engine.submit(T2V, str(i)) for i in range(60)]
    rng = random.Random(1)
    for step in range(400):
        job = rng.choice(jobs)
        roll = rng.random()
        if roll < 0.3:
            engine.cancel(job.request_id)
        elif roll < 0.4:
            engine.finish(job.request_id)
        elif roll < 0.45:
            engine.finish()
        queued = [j for j in jobs if j.status == protocol.IN_QUEUE]  # creation order is FIFO order
        for probe in rng.sample(jobs, 8):
            _, position = engine.get(probe.request_id)  # type: ignore[misc]
            expected = queued.index(probe) + 1 if probe in queued else None
            assert position == expected, step


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.2", Latency("fixed", 0.2)),
        ("fixed:1.5", Latency("fixed", 1.5)),
        ("uniform:0.1-0.5", Latency("uniform", 0.1, high=0.5)),
        ("lognormal:2,0.6", Latency("lognormal", 2, sigma=0.6)),
        ("manual", Latency("manual")),
    ],
)
def test_latency_parse(text: str, expected: Latency) -> None:
    """The CLI latency forms parse to the documented values."""
    assert Latency.parse(text) == expected


def test_faults_parse_and_reject_nonsense() -> None:
    """Fault strings parse by name; unknown names and impossible probabilities are refused."""
    assert Faults.parse("server_error=0.1, rate_limit=0.05,retry_after=3") == Faults(
        server_error=0.1, rate_limit=0.05, retry_after=3)
    assert Faults.parse("") == Faults()
    for bad in ("bogus=0.1", "reset=2", "reset"):
        with pytest.raises(ValueError):
            Faults.parse(bad)
    with pytest.raises(ValueError):
        Latency.parse("uniform:0.5-0.1")


@pytest.mark.parametrize("latency", ["nan", "inf", "uniform:0-nan", "lognormal:2,inf", "-1"])
def test_a_latency_that_would_never_end_a_job_is_refused(latency: str) -> None:
    """`--sim-latency nan` used to start a run whose jobs never finished: it is a ValueError
    (one line from the CLI) like any other impossible latency."""
    with pytest.raises(ValueError, match="latency"):
        Latency.parse(latency)


@pytest.mark.parametrize("balance", [-5.0, math.nan, math.inf])
def test_an_impossible_balance_is_refused(balance: float) -> None:
    """`sim --balance -5` (or nan) used to serve a simulator that refused every submit for a reason
    nobody asked for; a balance must be a finite number of USD >= 0."""
    with pytest.raises(ValueError, match="balance"):
        SimConfig(balance=balance)


def test_latency_samples_stay_in_range() -> None:
    """Uniform samples stay within bounds; lognormal ones are positive; manual never ends."""
    import random

    from batchrun.sim.engine import sample_latency

    rng = random.Random(0)
    assert all(0.1 <= sample_latency(Latency("uniform", 0.1, high=0.5), rng) <= 0.5 for _ in range(100))
    assert all(sample_latency(Latency("lognormal", 2, sigma=0.6), rng) > 0 for _ in range(100))
    assert sample_latency(Latency("manual"), rng) == math.inf


def test_simulator_restarts_and_stops_idempotently() -> None:
    """stop() twice is harmless, and two simulators never hand out the same request id."""
    ids = []
    for _ in range(2):
        with Simulator(SimConfig(latency=Latency("manual"), seed=7)) as sim, client_for(sim) as client:
            ids.append(submit(client))
        sim.stop()
    assert ids[0] != ids[1]


def test_expect_100_continue_and_oversized_bodies(make_simulator: MakeSim) -> None:
    """Clients that wait for 100 Continue get it; a body over the limit answers 413."""
    sim = make_simulator(max_body_bytes=1000)
    body = json.dumps({"prompt": "x" * 50}).encode()
    head = (f"POST {protocol.submit_path(T2V)} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sim-token\r\n"
            f"Expect: 100-continue\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as sock:
        sock.sendall(head)
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 ")
        sock.sendall(body)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
    big = head.replace(f"Content-Length: {len(body)}".encode(), b"Content-Length: 5000")
    assert _raw_exchange(sim, big).startswith(b"HTTP/1.1 413 ")


def test_command_line_server_announces_its_url_and_stops_on_ctrl_c() -> None:
    """`python -m batchrun.sim` prints the URL it serves and exits cleanly on Ctrl-C."""
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "batchrun.sim", "--latency", "manual", "--seed", "1"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("RunComfy simulator listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1].strip()
        assert httpx.get(url + protocol.status_path("x"), headers={"Authorization": "Bearer sim-token"}).status_code == 404
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0


def test_restart_keeps_jobs_and_port(make_simulator: MakeSim) -> None:
    """A stopped simulator started again serves the same jobs at the same URLs."""
    sim = make_simulator(latency="manual")
    with client_for(sim) as client:
        rid = submit(client)
    port = sim.port
    sim.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(sim.base_url + protocol.status_path(rid))
    sim.start()
    assert sim.port == port
    sim.finish(rid)
    with client_for(sim) as client:
        assert status_of(client, rid)["status"] == protocol.COMPLETED
