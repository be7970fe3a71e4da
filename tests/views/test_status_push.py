"""Status changes pushed to open resident pages: published on the subject's channel, streamed
as server-sent events, bounded per worker."""
import threading
import time

from healthcode.status_push import channel
from tests.views.test_sessions import sign_in


def read_events(response, wanted: int, seconds: float = 5.0) -> list[str]:
    """The first ``wanted`` events of a stream (comments skipped), read on a thread."""
    events: list[str] = []
    done = threading.Event()

    def reader():
        buffer = ""
        for chunk in response.response:
            buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                if block.startswith("event:"):
                    events.append(block)
                    if len(events) >= wanted:
                        done.set()
                        return

    threading.Thread(target=reader, daemon=True).start()
    done.wait(seconds)
    return events


def test_a_status_change_is_published_on_the_subjects_channel(client, creds, enrolled,
                                                               redis_client):
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel(enrolled["id"]))
    assert channel(enrolled["id"]) == f"hc:{{{enrolled['id']}}}:status"  # the subject's tag
    client.put(f"/api/v1/residents/{enrolled['id']}/status",
               json={"status": "red", "reason": "close_contact"}, headers=creds.authority)
    deadline = time.monotonic() + 5
    message = None
    while message is None and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.5)
    pubsub.close()
    assert message and message["data"] == "red|2"


def test_the_stream_sends_a_change_the_moment_it_happens(app, client, creds, enrolled):
    sign_in(client, creds.token("resident", enrolled["id"]))
    response = client.get("/me/events?v=1")
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-store"
    other = app.test_client()

    def change():
        time.sleep(1.0)  # the hub has subscribed by now
        other.put(f"/api/v1/residents/{enrolled['id']}/status",
                  json={"status": "yellow", "reason": "symptoms"}, headers=creds.authority)

    threading.Thread(target=change, daemon=True).start()
    started = time.monotonic()
    events = read_events(response, 1, seconds=6)
    assert events == ['event: status\ndata: {"status": "yellow", "status_version": 2}']
    assert time.monotonic() - started < 5
    response.close()


def test_a_change_missed_before_connecting_is_sent_at_once(client, creds, enrolled):
    client.put(f"/api/v1/residents/{enrolled['id']}/status",
               json={"status": "red", "reason": "positive_test"}, headers=creds.authority)
    sign_in(client, creds.token("resident", enrolled["id"]))
    response = client.get("/me/events?v=1")  # the page still shows version 1
    events = read_events(response, 1, seconds=3)
    assert events == ['event: status\ndata: {"status": "red", "status_version": 2}']
    response.close()


def test_only_a_signed_in_resident_gets_a_stream(client, creds):
    assert client.get("/me/events").status_code == 401
    assert client.get("/me/events", headers=creds.checkpoint).status_code == 403


def test_a_worker_holds_a_bounded_number_of_streams(app, client, creds, enrolled):
    app.extensions["healthcode.status_hub"].limit = 1
    sign_in(client, creds.token("resident", enrolled["id"]))
    hub = app.extensions["healthcode.status_hub"]
    first = client.get("/me/events?v=1")
    assert first.status_code == 200 and hub.open_streams == 1
    second = app.test_client()
    sign_in(second, creds.token("resident", enrolled["id"]))
    refused = second.get("/me/events?v=1")
    assert refused.status_code == 503 and refused.headers["Retry-After"]
    first.close()  # a page that goes, even before its first event, frees its place
    assert hub.open_streams == 0
    assert second.get("/me/events?v=1").status_code == 200


def test_the_push_can_be_switched_off(app, client, creds, enrolled):
    app.config["STATUS_STREAMS"] = 0
    sign_in(client, creds.token("resident", enrolled["id"]))
    assert client.get("/me/events").status_code == 503


def test_a_worker_without_open_pages_lets_go_of_its_pub_sub_connection(app, client, creds,
                                                                        enrolled, monkeypatch):
    from healthcode import status_push

    monkeypatch.setattr(status_push, "IDLE_SECONDS", 0.5)
    hub = app.extensions["healthcode.status_hub"]
    waiter = hub.register(enrolled["id"])
    listener = hub._thread
    hub.unregister(enrolled["id"], waiter)
    deadline = time.monotonic() + 5
    while listener.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not listener.is_alive(), "an idle worker still holds its pub/sub connection"
    # the next page starts listening again, and hears the next change
    waiter = hub.register(enrolled["id"])
    time.sleep(1.0)  # subscribed
    client.put(f"/api/v1/residents/{enrolled['id']}/status",
               json={"status": "red", "reason": "symptoms"}, headers=creds.authority)
    assert waiter.event.wait(5) and waiter.change == ("red", 2)
    hub.unregister(enrolled["id"], waiter)
