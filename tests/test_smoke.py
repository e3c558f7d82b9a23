from conftest import DaemonProcess

from orca_client.wire import Status, Subscribe


def test_hello(daemon: DaemonProcess) -> None:
    with daemon.client() as client:
        assert client.hello().protocol == 1


def test_hello_lists_the_request_types_the_daemon_serves(daemon: DaemonProcess) -> None:
    """What a client feature-detects with (docs/protocol.md, "Feature detection")."""
    with daemon.client() as client:
        served = client.hello().requests
    expected = {"hello", "status", "run", "answer", "subscribe", "reload", "check_agents"}
    assert expected <= set(served)
    assert len(served) == len(set(served))
    for request in (Status(), Subscribe()):
        assert request.__struct_config__.tag in served
