"""Notifications (`[notify]`, issue 13) end to end: a real orcad, a loopback webhook receiver and
a stand-in `notify-send` on orcad's PATH (tests/support/notify.py). A run waiting for an answer
and a run that ended are each told exactly once on every channel — across kill -9 too, with a
receiver that fails first, and never with a secret answer."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import DaemonProcess, all_records, wait_until
from support.homes import write_config
from support.notify import (
    Post,
    desktop_calls,
    fake_notify_send,
    notification_events,
    notify_config,
    receiving,
    wait_delivered,
)
from support.questions import DONE, q, start, wait_pending

from orca_client.events import QuestionAsked, RunStatusChanged
from orca_client.render_events import decode, event_line
from orca_client.views import Question, QuestionOption, RunInfo
from orca_daemon.config import ConfigError, load_config
from orca_daemon.orchestration.notify_text import notice_for

FAIL: dict[str, Any] = {"result": {"outcome": "failed", "error": "it broke"}}
DEPLOY = q(
    "target",
    "Where should it deploy?",
    header="Deploy",
    options=[{"label": "staging", "description": "safe"}, {"label": "production"}],
)


def asking_run(daemon: DaemonProcess, question: dict[str, Any] = DEPLOY) -> str:
    run_id = start(daemon, {"steps": [{"ask": [question]}, DONE]})
    wait_pending(daemon, run_id)
    return run_id


def kinds(posts: list[Post]) -> Counter[tuple[str, str]]:
    """(run id, kind) of each POST in Orca's json format."""
    return Counter((p.json()["run_id"], p.json()["kind"]) for p in posts)


def assert_each_delivery_recorded_once(daemon: DaemonProcess) -> None:
    outcomes = notification_events(daemon, "notification_sent") + notification_events(
        daemon, "notification_failed"
    )
    keys = Counter((e["trigger_position"], e["channel"]) for e in outcomes)
    assert all(n == 1 for n in keys.values()), keys
    triggered = notification_events(daemon, "notification_triggered")
    assert len({e["trigger_position"] for e in triggered}) == len(triggered)
    assert set(keys) == {(e["trigger_position"], c) for e in triggered for c in e["channels"]}


# --------------------------------------------------------------------------- exactly once


def test_a_waiting_run_and_an_ended_run_are_told_once_on_every_channel_in_its_format(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, tmp_path: Path
) -> None:
    path_env, desktop = fake_notify_send(tmp_path)
    with receiving() as receiver:
        webhooks = [
            (receiver.url("/json"), "json"),
            (receiver.url("/ntfy/orca-topic"), "ntfy"),
            (receiver.url("/slack"), "slack"),
        ]
        write_config(orca_home, notify_config(webhooks, desktop=True))
        daemon = make_daemon(extra_env=path_env).start()

        asking = asking_run(daemon)
        wait_delivered(daemon, 4)
        [waiting] = receiver.to("/json")
        body = waiting.json()
        assert body["run_id"] == asking and body["kind"] == "waiting"
        command = f"ORCA_HOME={daemon.home} orca answer {asking} 'TEXT'"  # exact, pasted anywhere
        assert body["answer_command"] == command
        assert body["summary"] == f"orca: run {asking} waits for an answer"
        for line in (
            "[Deploy] Where should it deploy?",
            "  1. staging — safe",
            "  2. production",
            f"answer: {command}",
        ):
            assert line in body["text"].splitlines(), body["text"]
        position = body["position"]
        assert body["idempotency_key"] == waiting.headers["Idempotency-Key"]
        assert body["idempotency_key"].startswith(f"orca-{position}-webhook:127.0.0.1:")
        [call] = desktop_calls(desktop)
        assert call[:4] == ["--app-name=Orca", "--urgency=critical", "--", body["summary"]]
        assert f"answer: {command}" in call[4]

        # the command as told, pasted into a shell that knows nothing of this orcad's home
        pasted = command.replace("'TEXT'", "staging").replace(
            "orca answer", f"{sys.executable} -m orca_client.cli answer"
        )
        env = {k: v for k, v in daemon.env.items() if k != "ORCA_HOME"}
        done = subprocess.run(["/bin/sh", "-c", pasted], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert daemon.wait_for_run(asking).status == "completed"
        failing = start(daemon, {"steps": [FAIL]})
        assert daemon.wait_for_run(failing).status == "failed"
        cancelled = asking_run(daemon, q("other"))
        assert daemon.orca("cancel", cancelled).returncode == 0
        assert daemon.wait_for_run(cancelled).status == "cancelled"
        wait_delivered(daemon, 16)  # 4 channels x 4: asked, completed, failed, asked (cancelled)

        json_posts = receiver.to("/json")
        assert kinds(json_posts) == Counter(
            {(asking, "waiting"): 1, (asking, "completed"): 1, (failing, "failed"): 1,
             (cancelled, "waiting"): 1}
        )  # fmt: skip
        by_kind = {(p.json()["run_id"], p.json()["kind"]): p.json() for p in json_posts}
        ended = by_kind[(failing, "failed")]
        assert ended["summary"] == f"orca: run {failing} failed"
        assert "it broke" in ended["text"] and ended["answer_command"] is None
        assert "completed" in by_kind[(asking, "completed")]["summary"]

        # ntfy: text to the topic URL, the rest in its headers; one POST per notification.
        ntfy = receiver.to("/ntfy/orca-topic")
        assert len(ntfy) == 4
        [ntfy_waiting] = [p for p in ntfy if p.headers["Title"] == body["summary"]]
        assert ntfy_waiting.body.decode() == body["text"]
        assert ntfy_waiting.headers["Title"] == body["summary"]
        assert ntfy_waiting.headers["Priority"] == "high"
        assert ntfy_waiting.headers["Content-Type"].startswith("text/plain")
        assert ntfy_waiting.headers["Idempotency-Key"].startswith(f"orca-{position}-")
        assert sorted(p.headers["Tags"] for p in ntfy) == sorted(
            ["question", "question", "white_check_mark", "x"]
        )
        # slack: an incoming webhook's {"text": ...}, and nothing else.
        slack = receiver.to("/slack")
        assert len(slack) == 4
        assert all(set(p.json()) == {"text"} for p in slack)
        assert any(p.json()["text"].startswith(f"*orca: run {failing} failed*\n") for p in slack)
        # desktop: one notify-send each; an end that completed is not urgent.
        calls = desktop_calls(desktop)
        assert len(calls) == 4
        assert [c[3] for c in calls].count(f"orca: run {asking} completed") == 1
        assert ["--urgency=normal" in c for c in calls].count(True) == 1
        assert_each_delivery_recorded_once(daemon)
        assert len(receiver.posts) == 12


def test_kill_9_between_the_question_and_the_end_repeats_nothing_and_misses_nothing(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, tmp_path: Path
) -> None:
    path_env, desktop = fake_notify_send(tmp_path)
    with receiving() as receiver:
        write_config(orca_home, notify_config([(receiver.url("/hook"), "json")], desktop=True))
        daemon = make_daemon(extra_env=path_env).start()
        asking = asking_run(daemon)
        wait_delivered(daemon, 2)
        daemon.kill()  # the session runs on in its holder

        daemon = make_daemon(extra_env=path_env).start()
        assert daemon.orca("answer", asking, "production").returncode == 0
        assert daemon.wait_for_run(asking).status == "completed"
        wait_delivered(daemon, 4)
        daemon.kill()
        daemon = make_daemon(extra_env=path_env).start()
        barrier = start(daemon, {"steps": [DONE]})  # deliveries after a restart come before it
        assert daemon.wait_for_run(barrier).status == "completed"
        wait_delivered(daemon, 6)

        assert kinds(receiver.posts) == Counter(
            {(asking, "waiting"): 1, (asking, "completed"): 1, (barrier, "completed"): 1}
        )
        summaries = [call[3] for call in desktop_calls(desktop)]
        assert sorted(summaries) == sorted(
            [
                f"orca: run {asking} waits for an answer",
                f"orca: run {asking} completed",
                f"orca: run {barrier} completed",
            ]
        )
        assert_each_delivery_recorded_once(daemon)


@pytest.mark.parametrize("delay", [0.0, 0.05])
def test_kill_9_right_after_a_run_ends_still_tells_it_once(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, tmp_path: Path, delay: float
) -> None:
    """Wherever the crash lands (before the trigger is recorded, before the POST, after it), the
    end is told: recorded sent once per channel, and a receiver that got it twice (delivered,
    not yet recorded) got the same idempotency key both times."""
    path_env, desktop = fake_notify_send(tmp_path)
    with receiving() as receiver:
        write_config(orca_home, notify_config([(receiver.url("/hook"), "json")], desktop=True))
        daemon = make_daemon(extra_env=path_env).start()
        run_id = start(daemon, {"steps": [DONE]})
        assert daemon.wait_for_run(run_id).status == "completed"
        time.sleep(delay)  # where in the notification's life the crash lands
        daemon.kill()
        daemon = make_daemon(extra_env=path_env).start()
        wait_delivered(daemon, 2)
        assert_each_delivery_recorded_once(daemon)
        [triggered] = notification_events(daemon, "notification_triggered")
        assert triggered["run_id"] == run_id and triggered["kind"] == "completed"
        assert {p.json()["run_id"] for p in receiver.posts} == {run_id}
        assert len({p.headers["Idempotency-Key"] for p in receiver.posts}) == 1
        assert {c[3] for c in desktop_calls(desktop)} == {f"orca: run {run_id} completed"}


def test_runs_ended_by_a_daemon_stop_are_told_once_by_it_or_the_next_orcad(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    with receiving() as receiver:
        write_config(orca_home, notify_config([(receiver.url("/hook"), "json")]))
        daemon = make_daemon().start()
        waiting = [asking_run(daemon, q("go")) for _ in range(3)]
        wait_delivered(daemon, 3)
        assert daemon.stop_ending_sessions() == 0  # each run ends failed as orcad stops
        daemon = make_daemon().start()
        wait_delivered(daemon, 6)
        expected = {(r, kind): 1 for r in waiting for kind in ("waiting", "failed")}
        assert kinds(receiver.posts) == Counter(expected)
        assert_each_delivery_recorded_once(daemon)


def test_a_delivery_cut_by_kill_9_is_made_again_with_the_same_idempotency_key(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    """The one window for a duplicate: the receiver got the POST, orcad died before recording
    it. The next orcad delivers it again, with the same key, and records it once."""
    hold = threading.Event()
    with receiving(hold=hold) as receiver:
        write_config(orca_home, notify_config([(receiver.url("/hook"), "json")]))
        daemon = make_daemon().start()
        run_id = start(daemon, {"steps": [DONE]})
        wait_until(lambda: receiver.posts, what="the POST")
        daemon.kill()
        hold.set()
        daemon = make_daemon().start()
        [sent] = wait_delivered(daemon, 1)
        first, again = receiver.posts
        assert first.body == again.body and first.json()["run_id"] == run_id
        assert first.headers["Idempotency-Key"] == again.headers["Idempotency-Key"]
        assert sent["channel"] in first.json()["idempotency_key"]
        assert_each_delivery_recorded_once(daemon)


# --------------------------------------------------------------------------- failures


def test_a_receiver_that_fails_then_refuses_gets_it_later_once(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    with receiving(status=lambda post: 500) as receiver:
        write_config(orca_home, notify_config([(receiver.url("/hook"), "json")]))
        daemon = make_daemon().start()
        run_id = start(daemon, {"steps": [DONE]})
        wait_until(lambda: receiver.posts, what="the first POST")
        receiver.stop()  # now connections are refused
        wait_until(lambda: "could not connect" in daemon.output(), what="a refused attempt")
        receiver.status = lambda post: 200
        receiver.start()  # the same port again
        [sent] = wait_delivered(daemon, 1)
        assert sent["run_id"] == run_id and sent["attempts"] >= 3
        failed, delivered = receiver.posts
        assert failed.body == delivered.body
        assert "attempt 1 failed: HTTP 500" in daemon.output()
        assert daemon.status(run_id).runs[0].status == "completed"
        assert_each_delivery_recorded_once(daemon)


def test_an_undeliverable_notification_is_given_up_and_recorded(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, tmp_path: Path
) -> None:
    """A receiver that always fails is given up after `give_up_after_seconds`; with no
    notify-send on orcad's PATH the desktop is recorded as not available, at once, and said
    once in orcad's log — not retried."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    with receiving(status=lambda post: 503) as receiver:
        config = notify_config(
            [(receiver.url("/hook"), "json")], desktop=True, extra="give_up_after_seconds = 1.5"
        )
        write_config(orca_home, config)
        daemon = make_daemon(extra_env={"PATH": str(empty)}).start()
        wait_until(lambda: "notify-send is not on orcad's PATH" in daemon.output(), "a warning")
        runs = [start(daemon, {"steps": [DONE]}) for _ in range(2)]
        wait_delivered(daemon, 4)
        failed = notification_events(daemon, "notification_failed")
        by_channel = Counter(e["channel"] for e in failed)
        assert by_channel["desktop"] == 2 and len(failed) == 4
        for event in failed:
            if event["channel"] == "desktop":
                assert event["attempts"] == 1
                assert event["reason"] == "notify-send not found on orcad's PATH"
            else:
                assert event["reason"].startswith("HTTP 503 (gave up after ")
                assert event["attempts"] >= 2
        assert daemon.output().count("desktop is not available") == 1
        assert {p.json()["run_id"] for p in receiver.posts} == set(runs)
        lines = [event_line(r, decode(r)) for r in all_records(daemon)]  # as `orca watch` shows
        failing = [line for line in lines if "notification_failed" in line]
        assert len(failing) == 4
        assert (
            sum("desktop (position" in line and "notify-send not found" in line for line in failing)
            == 2
        )
        assert any(
            "notification_triggered" in line and "completed (position" in line for line in lines
        )


def test_a_secret_answer_never_reaches_a_notification_or_a_log(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, tmp_path: Path
) -> None:
    secret = "hunter2-do-not-leak"
    token = "tk_header_token_never_logged"
    path_env, desktop = fake_notify_send(tmp_path)
    with receiving() as receiver:
        slack_path = "/services/T0/B0/SlackUrlSecret"
        write_config(
            orca_home,
            notify_config(
                [(receiver.url("/ntfy/topic"), "ntfy"), (receiver.url(slack_path), "slack")],
                desktop=True,
                headers={"Authorization": f"Bearer {token}"},
            ),
        )
        daemon = make_daemon(extra_env=path_env).start()
        question = q("api_key", "Which API key may it use?", header="Key", isSecret=True)
        run_id = asking_run(daemon, question)
        assert daemon.orca("answer", run_id, secret).returncode == 0
        assert daemon.wait_for_run(run_id).status == "completed"
        wait_delivered(daemon, 6)

        waiting = [p for p in receiver.posts if p.headers.get("Tags") == "question"]
        assert "Which API key may it use?" in waiting[0].body.decode()
        assert f"orca answer {run_id}\n" in waiting[0].body.decode() + "\n"  # no TEXT: asks
        assert all(p.headers["Authorization"] == f"Bearer {token}" for p in receiver.posts)
        for post in receiver.posts:
            assert secret not in post.body.decode() + repr(post.headers)
        assert all(secret not in repr(call) for call in desktop_calls(desktop))
        assert len(desktop_calls(desktop)) == 2
        assert daemon.stop() == 0
        log_bytes = b"".join(p.read_bytes() for p in orca_home.glob("events.sqlite3*"))
        for leaked in (secret, token, "SlackUrlSecret"):
            assert leaked.encode() not in log_bytes, leaked
            assert leaked not in daemon.output(), leaked


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[notify.webhook]]\nurl = "ftp://example.com/x"\n',
            "key notify.webhook[0].url: must be an http:// or https:// URL with a host",
        ),
        (
            '[[notify.webhook]]\nurl = "https://ntfy.sh/t"\nformat = "discord"\n',
            "key notify.webhook[0].format: Invalid enum value 'discord'",
        ),
        ("[notify]\ndesktops = true\n", "key notify.desktops: unknown key"),
        (
            '[[notify.webhook]]\nurl = "https://ntfy.sh/t"\ntoken = "x"\n',
            "key notify.webhook[0].token: unknown key",
        ),
        ("[notify]\ntimeout_seconds = 0\n", "key notify.timeout_seconds: must be between 0.1"),
        (
            '[[notify.webhook]]\nurl = "https://ntfy.sh/t"\nheaders = {Host = "x"}\n',
            "key notify.webhook[0].headers: Host is set by orcad itself",
        ),
        (
            '[[notify.webhook]]\nurl = "https://t"\nheaders = {"idempotency-key" = "fixed"}\n',
            "key notify.webhook[0].headers: idempotency-key is set by orcad itself",
        ),
        (
            '[[notify.webhook]]\nurl = "http://user:pw@127.0.0.1:8765/slack"\n',
            "key notify.webhook[0].url: a user or password in the URL is not sent; give it as a "
            "header instead",
        ),
        (
            '[[notify.webhook]]\nurl = "https://a/b"\n[[notify.webhook]]\nurl = "https://a/b"\n',
            "notify.webhook[1].url: the same URL as notify.webhook[0]",
        ),
    ],
)
def test_a_bad_notify_table_is_refused_naming_the_file_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(path) in str(refused.value)
    assert message in str(refused.value)


def test_a_bad_url_is_refused_without_showing_it_and_every_error_is_listed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[notify]\ndesktop = "yes"\n[[notify.webhook]]\nurl = "hooks.slack.com/SECRET"\n'
        '[[notify.webhook]]\nurl = "https://ok/x"\nformat = "slak"\n'
    )
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    text = str(refused.value)
    assert "3 errors" in text and "SECRET" not in text
    assert "notify.desktop" in text and "notify.webhook[1].format" in text


def test_a_reload_turns_notifications_on_from_the_next_event(daemon: DaemonProcess) -> None:
    before = start(daemon, {"steps": [DONE]})
    assert daemon.wait_for_run(before).status == "completed"
    with receiving() as receiver:
        daemon.paths.config_file.write_text(notify_config([(receiver.url("/hook"), "json")]))
        reloaded = daemon.orca("daemon", "reload", "--json")
        assert reloaded.returncode == 0, reloaded.stderr
        changed = json.loads(reloaded.stdout)["changed"]
        assert changed == ["notify.webhook", "notify.timeout_seconds"]
        after = start(daemon, {"steps": [DONE]})
        assert daemon.wait_for_run(after).status == "completed"
        wait_delivered(daemon, 1)
        assert kinds(receiver.posts) == Counter({(after, "completed"): 1})


# --------------------------------------------------------------------------- what is told


def run_info(**fields: Any) -> RunInfo:
    defaults: dict[str, Any] = {
        "run_id": "r1",
        "title": "fix the parser",
        "status": "running",
        "cwd": "/",
        "created_at": 0.0,
        "updated_at": 0.0,
    }
    return RunInfo(**(defaults | fields))


def test_who_is_told_what() -> None:
    asked = QuestionAsked("r1", "r1.2", "q1", [Question("q", "Go?")])
    several = QuestionAsked("r1", "s1", "req-1", [Question("a", "A?"), Question("b", "B?")])
    child = run_info(parent_run_id="p1")
    assert notice_for(RunStatusChanged("r1", "cancelled", "by you"), run_info()) is None
    assert notice_for(RunStatusChanged("r1", "completed"), child) is None  # its parent's is
    assert notice_for(RunStatusChanged("r1", "running"), run_info()) is None
    told = notice_for(asked, child)  # a child's question needs a person all the same
    assert told is not None and told.answer_command == "orca answer r1 'TEXT'"
    told = notice_for(asked, run_info(), other_requests=1)
    assert told is not None and told.answer_command == "orca answer r1 --session 2 'TEXT'"
    told = notice_for(several, run_info())
    assert told is not None and told.answer_command == "orca answer r1"
    long = Question("q", "x" * 5000, options=[QuestionOption(f"o{i}") for i in range(20)])
    told = notice_for(QuestionAsked("r1", "s1", "q", [long]), run_info(title="t\x1b[31m"))
    assert told is not None and len(told.text) <= 1000 and "\x1b" not in told.text
    assert "… and 14 more options" in told.text
    many = [Question(f"q{i}", "y" * 400, options=[QuestionOption("z" * 200)] * 6) for i in range(9)]
    told = notice_for(QuestionAsked("r1", "s1", "q", many), run_info())
    assert told is not None and len(told.text) <= 1000
    assert told.text.endswith("\nanswer: orca answer r1")
    fanout = run_info(task_file="/s/runs/r1/synthesis.md")
    done = RunStatusChanged("r1", "completed", "synthesized 3 agents")
    told = notice_for(done, fanout, summary="the parser drops a token at EOF")
    assert told is not None and told.text == (
        "fix the parser\nsynthesized 3 agents\nthe parser drops a token at EOF\n"
        "synthesis: /s/runs/r1/synthesis.md\ndetails: orca status r1"
    )
    told = notice_for(done, fanout, summary="z" * 5000)
    assert told is not None and len(told.text) <= 1000
    assert told.text.endswith("…\nsynthesis: /s/runs/r1/synthesis.md\ndetails: orca status r1")
