"""The download step against a local HTTP server on 127.0.0.1 that honours range requests."""
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from idsf_pyg.errors import DownloadError
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
    with pytest.raises(DownloadError, match="HTTP 404"):
        download.main(["--category", "Nope", "--out", str(tmp_path), "--base-url", server, "--no-progress"])


def test_download_checks_expected_digests(server, tmp_path):
    names = download.file_names("Toy")
    good = hashlib.sha256(PAYLOAD).hexdigest()
    argv = ["--category", "Toy", "--out", str(tmp_path), "--base-url", server, "--no-progress", "--only", "reviews"]
    manifest = download.main(argv + ["--sha256", f"{names[0]}={good}"])
    assert manifest["files"][0]["verified"] is True
    # The manifest of that download checks the file found there now: it still matches.
    (tmp_path / "earlier.json").write_text((tmp_path / "download_manifest.json").read_text())
    assert download.main(argv + ["--hashes", str(tmp_path / "earlier.json")])["files"][0]["verified"]
    # A changed file is refused and set aside, never reported as good.
    (tmp_path / names[0]).write_bytes(PAYLOAD[:-1] + b"x")
    with pytest.raises(DownloadError, match="does not match the expected " + good):
        download.main(argv + ["--sha256", f"{names[0]}={good}"])
    assert not (tmp_path / names[0]).exists() and (tmp_path / (names[0] + ".mismatch")).exists()
    # A fresh download whose content differs from the digest given (sha256sum format) fails too.
    (tmp_path / "sums.txt").write_text(f"{'0' * 64}  {names[0]}\n")
    with pytest.raises(DownloadError, match="does not match"):
        download.main(argv + ["--hashes", str(tmp_path / "sums.txt")])


def test_download_defaults_to_https():
    assert download.BASE_URL.startswith("https://")
