"""``grw-edge serve``: readable errors before serving (the demo itself is tested in a real
browser by tests/test_js_runtime.py)."""
from __future__ import annotations

import shutil
import threading
import urllib.request

import pytest
from click.testing import CliRunner

from grw_edge.cli import cli
from grw_edge.serve import ServeError, demo_routes, make_server


def test_serve_refuses_a_missing_artifact(tmp_path):
    result = CliRunner().invoke(cli, ["serve", str(tmp_path / "nothing")])
    assert result.exit_code == 1
    assert "no artifact directory" in result.output
    assert "Traceback" not in result.output


def test_serve_needs_the_built_js_runtime(artifacts, tmp_path):
    try:
        demo_routes(artifacts["movineta0s"], js_root=tmp_path)
    except ServeError as error:
        assert "npm ci" in str(error) and "npm run build" in str(error)
    else:
        raise AssertionError("an unbuilt JS runtime was accepted")


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed: the JS "
                    "runtime the demo serves cannot be built")
def test_serve_sends_isolation_headers(artifacts):
    """COOP/COEP on every response (wasm threads), the artifact under /artifact/."""
    server = make_server(artifacts["movineta0s"], port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        with urllib.request.urlopen(f"{base}/artifact/manifest.json") as response:
            assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
            assert response.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
            assert b'"format_version"' in response.read()
        with urllib.request.urlopen(f"{base}/") as response:
            assert b"grw-edge live demo" in response.read()
    finally:
        server.shutdown()
        server.server_close()
