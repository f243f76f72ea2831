"""PRETRAINED=imagenet: Keras's cache first, else a download with a time-out and Keras's
checksum; offline or a server that never answers gives a clear message at once.

Every server here listens on the loopback address only."""

import contextlib
import hashlib
import http.server
import os
import socket
import threading
import time

import pytest

from povmap_qgis.core.errors import PovmapInputError
from povmap_qgis.core.model import pretrained

NAME, MD5 = pretrained.IMAGENET_FILES["resnet50"]


class Log:
    def __init__(self):
        self.lines = []

    def info(self, message):
        self.lines.append(message)

    def warning(self, message):
        self.lines.append(message)

    def check_canceled(self):
        pass


@pytest.fixture()
def keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv(pretrained.TIMEOUT_VARIABLE, "2")
    return tmp_path / "keras" / "models"


def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the socket closes


@contextlib.contextmanager
def serving(body=None, hang=False):
    """A loopback HTTP server answering every GET with ``body`` (or never answering)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if hang:
                time.sleep(5)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *arguments):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_the_keras_cache_is_used_without_any_download(keras_home, monkeypatch):
    keras_home.mkdir(parents=True)
    (keras_home / NAME).write_bytes(b"cached")
    monkeypatch.setenv(pretrained.BASE_URL_VARIABLE, f"http://127.0.0.1:{closed_port()}/")
    found = pretrained.backbone_weights("imagenet", ["resnet50", "compact_cnn"], Log())
    assert found == {"resnet50": str(keras_home / NAME)}


def test_offline_says_where_to_put_the_files_at_once(keras_home, monkeypatch):
    monkeypatch.setenv(pretrained.BASE_URL_VARIABLE, f"http://127.0.0.1:{closed_port()}/")
    started = time.monotonic()
    with pytest.raises(PovmapInputError) as error:
        pretrained.backbone_weights("imagenet", ["resnet50"], Log())
    assert time.monotonic() - started < 5
    assert error.value.parameter == "PRETRAINED"
    assert "offline" in str(error.value) and str(keras_home) in str(error.value)
    assert not keras_home.exists() or not os.listdir(keras_home)


def test_a_server_that_never_answers_times_out_with_a_message(keras_home, monkeypatch):
    with serving(hang=True) as url:
        monkeypatch.setenv(pretrained.BASE_URL_VARIABLE, url)
        started = time.monotonic()
        with pytest.raises(PovmapInputError, match="time-out 2 s"):
            pretrained.backbone_weights("imagenet", ["resnet50"], Log())
        assert time.monotonic() - started < 4.5
    assert not os.listdir(keras_home)


def test_a_download_that_is_not_kerass_file_is_refused_and_not_kept(keras_home, monkeypatch):
    with serving(body=b"not the weights" * 1000) as url:
        monkeypatch.setenv(pretrained.BASE_URL_VARIABLE, url)
        with pytest.raises(PovmapInputError, match="checksum differs"):
            pretrained.backbone_weights("imagenet", ["resnet50"], Log())
    assert not os.listdir(keras_home)


def test_a_good_download_lands_in_the_cache_with_progress(keras_home, monkeypatch):
    body = os.urandom(3 << 20)
    monkeypatch.setitem(
        pretrained.IMAGENET_FILES, "resnet50", (NAME, hashlib.md5(body).hexdigest())
    )
    log = Log()
    with serving(body=body) as url:
        monkeypatch.setenv(pretrained.BASE_URL_VARIABLE, url)
        found = pretrained.backbone_weights("imagenet", ["resnet50"], log)
    assert found == {"resnet50": str(keras_home / NAME)}
    assert (keras_home / NAME).read_bytes() == body
    assert os.listdir(keras_home) == [NAME]
    assert any("downloading ImageNet weights" in line for line in log.lines)
    assert any("3 of 3 MB" in line for line in log.lines)


def test_a_folder_is_never_downloaded_into(tmp_path):
    with pytest.raises(PovmapInputError, match="not in the folder given"):
        pretrained.backbone_weights(str(tmp_path), ["resnet101"], Log())
    assert not os.listdir(tmp_path)
