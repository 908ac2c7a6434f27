"""The officers' web page in a real browser: Debian's chromium driven by Playwright.

Needs ``/usr/bin/chromium`` (``apt-get install -y chromium``) and the ``playwright``
Python package; never ``playwright install`` (it downloads browsers).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import socket
import threading
import time
from pathlib import Path

import pytest
from tiny_model import make_tiny_bundle

from serving.app import create_app
from serving.settings import Settings
from serving.store import Store
from vision.registry import create_model
from vision.taxonomy import get_category, label_name

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path("/tmp/page.png")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real uvicorn server on a free loopback port, with the tiny bundle and one API key."""
    import uvicorn

    folder = tmp_path_factory.mktemp("web")
    bundle = make_tiny_bundle(folder / "models")
    settings = Settings(model=str(bundle), data_dir=folder / "var")
    with Store(settings.db_path) as store:
        key = store.add_key("browser-test")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield {"url": f"http://127.0.0.1:{port}", "key": key, "bundle": bundle, "settings": settings}
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install -y chromium")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser, server):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.requests_seen = []
    page.on("request", lambda request: page.requests_seen.append(request.url))
    page.goto(server["url"] + "/")
    yield page
    context.close()


def enter_key(page, key: str) -> None:
    page.fill("#api-key", key)
    page.click("#save-key")


def test_upload_see_label_switch_language_and_download_reports(page, server, photo):
    from playwright.sync_api import expect

    path = photo("ivory_carving")
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    expected = create_model(server["bundle"]).predict([(path.name, data)])[0]

    enter_key(page, server["key"])
    expect(page.locator("#key-status")).to_have_text("Key kept for this browser tab.", timeout=20000)
    page.set_input_files("#file-input", str(path))

    card = page.locator(".card").first
    expect(card.locator(".label-name")).to_have_text(label_name(expected.label, "en"), timeout=20000)
    expect(card.locator(".ev-sha256")).to_have_text(sha)
    expect(card.locator(".ev-model")).to_have_text("tiny.test 0.0.1")
    expect(card.locator(".legal")).not_to_be_empty()
    expect(card.locator(".conf-value")).to_contain_text("%")
    if expected.flagged:
        badge = "Flagged: likely protected"
    elif expected.label == "uncertain":
        badge = "Uncertain: check by eye"
    elif get_category(expected.label).is_wildlife:
        badge = "Possible match, below the alert threshold: check by eye"
    else:
        badge = "Not flagged"
    expect(card.locator(".badge")).to_have_text(badge)

    card.locator(".toggle-heatmap").click()
    expect(card.locator(".overlay")).to_be_visible()
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    page.select_option("#lang", "fr")
    expect(card.locator(".label-name")).to_have_text(label_name(expected.label, "fr"))
    expect(page.locator("#download-csv")).to_have_text("Télécharger le rapport (CSV)")
    expect(card.locator(".evidence-title")).to_have_text("Éléments de preuve")
    expect(page.locator("html")).to_have_attribute("lang", "fr")

    with page.expect_download() as download:
        page.click("#download-csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8-sig"))))
    assert len(rows) == 1
    assert rows[0]["sha256"] == sha and rows[0]["file"] == path.name
    assert rows[0]["label"] == expected.label and rows[0]["label_name"] == label_name(expected.label, "fr")
    assert rows[0]["model_name"] == "tiny.test" and len(rows[0]["result_id"]) == 32

    with page.expect_download() as download:
        page.click("#download-json")
    report = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert report["results"][0]["sha256"] == sha and report["lang"] == "fr"

    page.emulate_media(media="print")
    expect(page.locator("#download-csv")).to_be_hidden()
    expect(page.locator(".report-head")).to_be_visible()
    expect(page.locator("#print-time")).to_contain_text("UTC")
    expect(card.locator(".ev-sha256")).to_be_visible()
    page.screenshot(path="/tmp/page_print.png", full_page=True)

    assert all(url.startswith(server["url"]) or url.startswith(("blob:", "data:")) for url in page.requests_seen)


def test_wrong_key_and_bad_file_are_explained_in_words(page, server, tmp_path):
    enter_key(page, "wsk_000000000000_not-a-real-key")
    expect = pytest.importorskip("playwright.sync_api").expect
    expect(page.locator("#key-status")).to_contain_text("The API key was refused", timeout=20000)  # via /v1/me
    junk = tmp_path / "notes.jpg"
    junk.write_text("not a photo")
    page.set_input_files("#file-input", str(junk))
    card = page.locator(".card").first
    expect(card.locator(".error-text")).to_contain_text("The API key was refused", timeout=20000)

    enter_key(page, server["key"])
    page.click("summary[data-i18n=caseDetails]")
    page.fill("#case-id", "DE-ZOLL-7")
    page.set_input_files("#file-input", str(junk))
    expect(page.locator(".card").first.locator(".error-text")).to_contain_text(
        "This file is not an image", timeout=20000
    )
    with page.expect_download() as download:
        page.click("#download-json")
    refused = json.loads(Path(download.value.path()).read_text())["results"][-1]
    assert refused["error"]["reason"] == "not_an_image" and refused["case_id"] == "DE-ZOLL-7"  # kept on failures
    page.select_option("#lang", "de")
    card = page.locator(".card").first
    expect(card.locator(".error-text")).to_contain_text("Diese Datei ist kein Bild")
    expect(card.locator(".error-text")).not_to_contain_text("(")  # no English server message in a German card
    expect(card.locator(".ev-serverMessage")).to_contain_text("not a")  # it stays in the evidence block


def test_a_gallery_made_while_the_server_runs_decides_and_the_page_says_so(page, server, photo, tmp_path):
    from PIL import Image
    from playwright.sync_api import expect

    from vision.cli import main

    bundle = server["bundle"]
    negatives = [photo(label, i) for label in ("marketplace_photo", "everyday_object", "person") for i in range(3)]
    refs = [photo("taxidermy", i) for i in range(10)]
    assert main(["gallery", "negatives", "--model", str(bundle), *map(str, negatives)]) == 0
    assert main(["gallery", "add", "coral_jewellery", *map(str, refs), "--model", str(bundle)]) == 0
    repost = tmp_path / "repost.jpg"  # other bytes, same picture
    img = Image.open(refs[3]).convert("RGB")
    img.resize((img.width * 9 // 10, img.height * 9 // 10)).save(repost, quality=80)

    enter_key(page, server["key"])
    page.set_input_files("#file-input", str(repost))
    card = page.locator(".card").first
    expect(card.locator(".ev-decidedBy")).to_contain_text("reference photos", timeout=20000)
    expect(card.locator(".ev-decidedBy")).to_contain_text("version 1")
    expect(card.locator(".others")).to_contain_text("The model alone said")
    references = card.locator(".ev-references").inner_text().split()
    assert hashlib.sha256(refs[3].read_bytes()).hexdigest() in references


def test_an_officer_marks_a_result_wrong_and_the_export_has_it(page, server, photo, tmp_path):
    from playwright.sync_api import expect

    from serving.feedback import export_feedback

    path = photo("reef_coral_live", 3)
    enter_key(page, server["key"])
    page.set_input_files("#file-input", str(path))
    card = page.locator(".card").first
    expect(card.locator(".fb-question")).to_have_text("Is this result right?", timeout=20000)
    result_id = card.locator(".ev-resultId").inner_text()
    card.locator(".fb-wrong").click()
    card.locator(".fb-label").select_option("figurine")  # a category the tiny model never says
    card.locator(".fb-send").click()
    expect(card.locator(".fb-status")).to_have_text(f"Recorded: it shows {label_name('figurine', 'en')}. Thank you.")
    page.select_option("#lang", "de")
    expect(card.locator(".fb-status")).to_contain_text(label_name("figurine", "de"))

    with Store(server["settings"].db_path) as store:
        done = export_feedback(store, tmp_path / "export", None)
    with open(done.manifest, newline="", encoding="utf-8") as f:
        rows = {r["result_id"]: r for r in csv.DictReader(f)}
    assert (rows[result_id]["verdict"], rows[result_id]["label"]) == ("wrong", "figurine")
    assert rows[result_id]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert rows[result_id]["given_by"] == "browser-test"


# Words that are the same in English and the other language (checked by hand).
SAME_WORD = {"model": {"nl"}, "modelLine": {"nl"}}


def test_every_page_string_and_error_reason_is_translated(page):
    strings = page.evaluate("() => STRINGS")
    english = strings["en"]
    for lang in ("fr", "de", "nl"):
        assert set(strings[lang]) == set(english), lang
        assert set(strings[lang]["reasons"]) == set(english["reasons"]), lang
        same = {k for k, v in strings[lang].items() if k != "reasons" and v == english[k]}
        same |= {k for k, v in strings[lang]["reasons"].items() if v == english["reasons"][k]}
        assert same <= {k for k, langs in SAME_WORD.items() if lang in langs}, (lang, same)


def test_the_html_report_of_a_scan_opens_offline_with_thumbnails(browser, server, photo, tmp_path):
    import shutil

    from playwright.sync_api import expect

    from vision.cli import main

    crawl = tmp_path / "crawl"
    crawl.mkdir()
    photos = [photo(label, i) for label in ("ivory_carving", "ceramic_lookalike", "product_photo") for i in range(2)]
    names = []
    for i, source in enumerate(photos):
        shutil.copy(source, crawl / f"{i}.jpg")
        names.append(f"{i}.jpg")
    (crawl / "cut.jpg").write_bytes(photos[0].read_bytes()[:900])
    names += ["0.jpg", "cut.jpg"]  # the first picture re-posted by another seller; a truncated download
    manifest = crawl / "ads.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "url", "title", "price", "seller", "platform", "posted_at"])
        for i, name in enumerate(names):
            title = "<script>alert(1)</script> carving" if i == 0 else f"item {i}"
            writer.writerow(
                [name, f"https://market.example/ad/{i}", title, 20 + i, f"s{i % 4}", "marketA", "2026-11-0"]
            )
    out, report = tmp_path / "r.parquet", tmp_path / "report.html"
    model = str(server["bundle"])
    assert (
        main(["scan", str(manifest), "--out", str(out), "--model", model, "--quiet", "--threshold", "ivory=0.0"]) == 0
    )
    assert main(["report", str(out), "--html", str(report)]) == 0

    page = browser.new_page(viewport={"width": 1100, "height": 900})
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(report.as_uri())
    expect(page.locator("h1")).to_have_text("wildscan report")
    reposted = page.locator(".group h3", has_text="Same picture in 2 ads")
    expect(reposted).to_contain_text("2 flagged of 2 · sellers: s0, s2")
    expect(page.locator(".group").first.locator(".item").first.locator(".kind")).to_have_text("Flagged")
    widths = page.eval_on_selector_all(".item img", "imgs => imgs.map((i) => i.naturalWidth)")
    assert widths and all(0 < w <= 160 for w in widths)  # embedded thumbnails that really decode
    expect(page.locator("a[href='https://market.example/ad/0']")).to_have_count(1)
    expect(page.get_by_text("<script>alert(1)</script> carving")).to_have_count(1)  # shown as text, not run
    expect(page.locator("table.failures")).to_contain_text("truncated")
    expect(page.locator("caption", has_text="Flagged by day (posted_at)")).to_have_count(1)
    assert requests == [report.as_uri()]  # nothing fetched: one offline file
    page.screenshot(path=str(tmp_path.parent / "report.png"), full_page=True)
    page.close()
