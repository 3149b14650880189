"""``grw-edge serve``: the live demo page, the JS runtime, onnxruntime-web and one artifact
on localhost, with the cross-origin isolation headers that wasm threads need.

Paths: ``/`` the demo (runtimes/js/demo), ``/js/`` the built package (runtimes/js/dist),
``/ort/`` onnxruntime-web's dist files, ``/litertjs/`` the LiteRT.js packages (LiteRT artifacts),
``/artifact/`` the artifact directory.
"""
from __future__ import annotations

import functools
import posixpath
from collections.abc import Callable
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from grw_edge.errors import GrwEdgeError
from grw_edge.manifest import read_manifest

JS_ROOT = Path(__file__).resolve().parents[1] / "runtimes" / "js"
ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


class ServeError(GrwEdgeError):
    """The demo cannot be served (JS runtime not built, port taken)."""


def demo_routes(artifact: Path, js_root: Path = JS_ROOT) -> dict[str, Path]:
    """URL prefix -> folder; checks the artifact and that the JS runtime is built."""
    read_manifest(artifact)  # a readable error now rather than on the page
    routes = {"/js/": js_root / "dist", "/ort/": js_root / "node_modules" / "onnxruntime-web" / "dist",
              "/litertjs/": js_root / "node_modules" / "@litertjs",
              "/artifact/": Path(artifact), "/": js_root / "demo"}
    for prefix in ("/js/", "/ort/"):
        if not routes[prefix].is_dir():
            raise ServeError(f"{routes[prefix]} is missing: run `ONNXRUNTIME_NODE_INSTALL=skip npm ci "
                             f"&& npm run build` in {js_root}")
    return routes


class _Handler(SimpleHTTPRequestHandler):
    """Static files from the routes, with COOP/COEP headers and JS/wasm MIME types."""

    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                      ".js": "text/javascript", ".wasm": "application/wasm",
                      ".onnx": "application/octet-stream", ".tflite": "application/octet-stream",
                      ".json": "application/json"}

    def __init__(self, *args, routes: dict[str, Path], quiet: bool, **kwargs) -> None:
        self.routes, self.quiet = routes, quiet
        super().__init__(*args, **kwargs)

    def translate_path(self, path: str) -> str:
        path = posixpath.normpath(unquote(urlsplit(path).path))
        prefix = next(p for p in self.routes if path.startswith(p) or path == p.rstrip("/"))
        parts = [p for p in path[len(prefix.rstrip("/")):].split("/") if p not in ("", ".", "..")]
        return str(self.routes[prefix].joinpath(*parts))

    def end_headers(self) -> None:
        for name, value in ISOLATION_HEADERS.items():
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        if not self.quiet:
            super().log_message(format, *args)


def make_server(artifact: str | Path, *, host: str = "127.0.0.1", port: int = 8000,
                quiet: bool = True) -> ThreadingHTTPServer:
    """A server for the demo of ``artifact`` (port 0 picks a free port)."""
    handler = functools.partial(_Handler, routes=demo_routes(Path(artifact)), quiet=quiet)
    try:
        return ThreadingHTTPServer((host, port), handler)
    except OSError as error:
        raise ServeError(f"cannot listen on {host}:{port} ({error.strerror}); choose another "
                         f"--port") from None


def serve(artifact: str | Path, *, host: str = "127.0.0.1", port: int = 8000, quiet: bool = True,
          echo: Callable[[str], None] = print) -> None:
    """Serve until interrupted, after printing the demo's URL."""
    with make_server(artifact, host=host, port=port, quiet=quiet) as server:
        echo(f"grw-edge demo of {artifact}: http://{host}:{server.server_address[1]}/ "
             f"(Ctrl-C stops)")
        server.serve_forever()
