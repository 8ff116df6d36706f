"""The OpenAPI page works on a network that reaches no other host: every asset it loads is
served by the sidecar itself, from the package, over the real server."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from test_api import serving

from conftest import make_config
from tango_receiver.engine.receiver import Receiver


class Links(HTMLParser):
    """Every URL a page makes the browser load or follow (src and href attributes)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    receiver = Receiver(make_config(1, tmp_path_factory.mktemp("docs")))
    try:
        with serving(receiver) as client:
            yield client
    finally:
        receiver.close()


def test_docs_page_loads_everything_from_the_sidecar(http):
    reply = http.get("/docs")
    assert reply.status_code == 200
    assert "http://" not in reply.text and "https://" not in reply.text  # no CDN, no fonts
    parser = Links()
    parser.feed(reply.text)
    assert any(url.endswith("swagger-ui-bundle.js") for url in parser.urls), parser.urls
    for url in parser.urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, f"/docs loads {url} from another host"
        asset = http.get(url)
        assert asset.status_code == 200 and len(asset.content) > 1000, url
    assert http.get("/openapi.json").json()["info"]["title"].startswith("tango_receiver")
    assert http.get("/redoc").status_code == 404  # ReDoc would fetch its logo from its CDN


def test_swagger_assets_are_the_bundle_and_its_stylesheet(http):
    parser = Links()
    parser.feed(http.get("/docs").text)
    types = {url.rsplit(".", 1)[-1]: http.get(url).headers["content-type"] for url in parser.urls}
    assert types["js"].startswith(("text/javascript", "application/javascript"))
    assert types["css"].startswith("text/css")
    bundle = next(url for url in parser.urls if url.endswith("swagger-ui-bundle.js"))
    assert "SwaggerUIBundle" in http.get(bundle).text
