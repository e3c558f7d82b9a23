from conftest import DaemonProcess


def test_hello(daemon: DaemonProcess) -> None:
    with daemon.client() as client:
        assert client.hello().protocol == 1
