"""The download step against a local HTTP server on 127.0.0.1 that honours range requests."""
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from preprocessing import download

PAYLOAD = bytes(range(256)) * 4000  # ~1 MB


class RangeHandler(BaseHTTPRequestHandler):
    files = {}
    ranges_seen = []

    def do_GET(self):
        body = self.files.get(self.path.rsplit("/", 1)[-1])
        if body is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        self.ranges_seen.append(rng)
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    RangeHandler.files = {name: PAYLOAD[: 1000 * (k + 1)] if k else PAYLOAD
                          for k, name in enumerate(download.file_names("Toy"))}
    RangeHandler.ranges_seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/data"
    httpd.shutdown()


def test_download_resumes_and_reports(server, tmp_path):
    name = download.file_names("Toy")[0]
    (tmp_path / (name + ".part")).write_bytes(PAYLOAD[:300000])  # an interrupted earlier download
    manifest = download.main(["--category", "Toy", "--out", str(tmp_path), "--base-url", server, "--no-progress"])
    assert (tmp_path / name).read_bytes() == PAYLOAD
    assert "bytes=300000-" in RangeHandler.ranges_seen
    files = {f["path"].rsplit("/", 1)[-1]: f for f in manifest["files"]}
    assert files[name]["sha256"] == hashlib.sha256(PAYLOAD).hexdigest()
    assert files[name]["bytes"] == len(PAYLOAD)
    assert json.loads((tmp_path / "download_manifest.json").read_text())["category"] == "Toy"
    assert not list(tmp_path.glob("*.part"))


def test_download_missing_file_is_a_clear_error(server, tmp_path):
    with pytest.raises(SystemExit, match="HTTP 404"):
        download.main(["--category", "Nope", "--out", str(tmp_path), "--base-url", server, "--no-progress"])
