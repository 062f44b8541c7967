"""Behind Debian's nginx, as an instructor would host a class: the shipped configuration, the
common `Host $host` recipe on a non-default port, and a path prefix. In each, a learner trains
a chapter and sees live steps arrive through the proxy and the run's end. A proxy that does not
upgrade the live channel is named on the page in words, not left to silent retries."""

import pytest

from tests.browser import (
    FRAMES_JS,
    LONG_PLAYGROUND,
    alert,
    frames_beyond,
    lab_server,
    open_page,
    status_says,
    train_button,
    wait_until,
)
from tests.proxy import nginx_in_front

LIVE_FRAMES_JS = (
    "() => Number(document.querySelector('.st-key-playground-live .dl-panel')?.dataset.frames || 0)"
)
TOKEN_JS = "() => document.querySelector('.st-key-playground-live .dl-panel')?.dataset.token || ''"
PANEL_TEXT_JS = "() => document.querySelector('.st-key-playground-live .dl-status span')?.textContent || ''"
SHAPES = {
    "shipped (Host $http_host)": {},
    "Host $host, port dropped": {"proxy_set_header Host $http_host;": "proxy_set_header Host $host;"},
    "no Host line (the upstream's)": {"proxy_set_header Host $http_host;": ""},
}


def train_and_see_it_live(browser, base: str, logs) -> None:
    """A run long enough to watch: live frames arrive through nginx, Stop ends it, the page shows
    how it ended, and the run's token never reached the proxy's access log."""
    page = open_page(browser, base, "playground", LONG_PLAYGROUND)
    train_button(page, "playground").click()
    frames_beyond(page, 3, timeout=120)
    token = page.evaluate(TOKEN_JS)
    page.locator(".st-key-playground-stop button").click()
    alert(page, "Stopped").wait_for(timeout=120_000)
    assert token and token not in (logs / "access.log").read_text(), "the run's token reached the access log"
    page.close()


@pytest.mark.parametrize("edits", list(SHAPES.values()), ids=list(SHAPES))
def test_behind_nginx_a_learner_sees_live_steps_and_the_end(browser, server, edits):
    with nginx_in_front(server, edits=edits) as proxy:
        train_and_see_it_live(browser, proxy.base, proxy.logs)


def test_behind_nginx_under_a_path_prefix(browser):
    with lab_server("--server.baseUrlPath", "lab", base="/lab") as lab:
        with nginx_in_front(lab, "dllab-under-prefix.conf") as proxy:
            assert proxy.base.endswith("/lab")
            train_and_see_it_live(browser, proxy.base, proxy.logs)


def test_a_proxy_that_does_not_upgrade_the_live_channel_is_named_on_the_page(browser, server):
    """The live channel proxied as plain HTTP (a recipe that upgrades only /_stcore/stream):
    Streamlit's page works, the live view cannot, and the page says what the proxy must do."""
    # a location of its own for /_lab/, proxied as plain HTTP, ahead of the upgrading one
    plain_live = "    location /_lab/ {\n        proxy_pass http://dllab;\n    }\n\n    location / {"
    plain = {"    location / {": plain_live}
    with nginx_in_front(server, edits=plain) as proxy:
        page = open_page(browser, proxy.base, "playground", {"epochs": "150"})
        train_button(page, "playground").click()
        says = wait_until(
            page, PANEL_TEXT_JS, lambda t: "cannot reach the server" in t, "words on the page", 60
        )
        assert "WebSocket upgrades" in says and "/_lab/live" in says
        page.locator(".st-key-playground-stop button").click()
        page.close()


RUN_JS = "() => document.querySelector('.st-key-playground-live .dl-panel')?.dataset.run || ''"


def test_a_network_blip_is_not_a_leave(browser, server):
    """Every connection drops for 3 s (the proxy goes away and comes back): the learner's run
    trains on, and the page picks up the same run's live view again."""
    with nginx_in_front(server) as proxy:
        page = open_page(browser, proxy.base, "playground", LONG_PLAYGROUND)
        train_button(page, "playground").click()
        frames_beyond(page, 2, timeout=120)
        run = page.evaluate(RUN_JS)
        proxy.blip(3.0)
        status_says(page, "Training: step", timeout=60)  # the same run, still training
        assert page.evaluate(RUN_JS) == run
        before = page.evaluate(FRAMES_JS)
        frames_beyond(page, before + 3, timeout=60)  # its frames flow again
        page.locator(".st-key-playground-stop button").click()
        alert(page, "Stopped").wait_for(timeout=120_000)
        page.close()
