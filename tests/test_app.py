"""app.py: the web demo's scoring, its safe defaults, and the page itself in a real headless browser."""
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from fakedetect.cli import app
from fakedetect.models.registry import load_trained_model
from fakedetect.serve import app as serve_app
from fakedetect.serve.predict import predict

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def judge(tiny_run):
    model, checkpoint = load_trained_model(tiny_run["best"])
    return serve_app.Judge(model, checkpoint, "cpu"), model, checkpoint


def test_an_image_gets_predicts_probability_the_decision_and_an_overlay(judge, tiny_run):
    score, model, checkpoint = judge
    face = sorted((tiny_run["dataset"] / "test" / "fake").glob("*.png"))[0]
    [expected] = predict([(model, checkpoint["normalization"])], [face], checkpoint["threshold"], progress=False)
    verdict, scored, overlay = score(str(face))
    assert f"P(fake) = **{expected['fake_probability']:.3f}**" in verdict
    assert f"Verdict: {expected['decision'].upper()}" in verdict and f">= {checkpoint['threshold']:.3f}" in verdict
    assert scored.shape == (256, 256, 3)
    if importlib.util.find_spec("pytorch_grad_cam") is not None:
        assert overlay.shape == (256, 256, 3) and (overlay != scored).any()


def test_anything_but_a_readable_image_is_a_message(judge, tmp_path):
    score = judge[0]
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.png").write_bytes(b"PNG but not really")
    assert score(None) == (serve_app.PROMPT, None, None)
    verdict, scored, overlay = score(str(tmp_path / "notes.txt"))
    assert verdict.startswith("**notes.txt** is not an image this demo takes; drop a .jpg") and scored is None
    verdict, scored, overlay = score(str(tmp_path / "broken.png"))
    assert verdict.startswith("**broken.png**: cannot read image (") and str(tmp_path) not in verdict
    assert scored is None and overlay is None


def test_the_page_serves_this_machine_only_unless_asked(tiny_run, monkeypatch, capsys):
    gradio = pytest.importorskip("gradio")
    launched = []
    monkeypatch.setattr(gradio.Blocks, "launch", lambda self, **kwargs: launched.append(kwargs))
    assert app.main([str(tiny_run["best"])]) == 0
    assert app.main([str(tiny_run["best"]), "--port", "8000", "--host", "0.0.0.0", "--max-upload-mb", "2"]) == 0
    local, asked = launched
    assert (local["server_name"], local["server_port"], local["share"], local["max_file_size"]) == (
        "127.0.0.1", 7860, False, "20mb")
    assert (asked["server_name"], asked["server_port"], asked["max_file_size"]) == ("0.0.0.0", 8000, "2mb")
    output = capsys.readouterr().out
    assert "on http://127.0.0.1:7860 (this machine only)" in output and "(reachable beyond this machine)" in output


def test_a_bad_checkpoint_or_port_is_one_line(tmp_path, capsys):
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    assert app.main([str(tmp_path / "notes.pt")]) == 1
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'notes.pt'}: ")
    with pytest.raises(SystemExit) as exit_info:
        app.main([str(tmp_path / "notes.pt"), "--port", "0"])
    assert exit_info.value.code == 2 and "--port must be in 1..65535" in capsys.readouterr().err


def browser_problem():
    """Why the browser test cannot run here, or None."""
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install -r requirements-dev.txt)"
    if importlib.util.find_spec("gradio") is None:
        return "gradio is not installed (pip install -r requirements.txt)"
    if not any(shutil.which(name) for name in ("chromium", "chromium-browser")) or not shutil.which("chromedriver"):
        return "no headless browser: apt-get install chromium chromium-driver (.ci/run does)"
    return None


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_served(url, process, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"app.py did not serve {url}: {process.stdout.read() if process.poll() is not None else ''}")


@pytest.mark.slow
@pytest.mark.skipif(browser_problem() is not None, reason=str(browser_problem()))
def test_a_browser_uploads_a_face_and_reads_the_verdict(tiny_run, judge, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    face = sorted((tiny_run["dataset"] / "test" / "fake").glob("*.png"))[0]
    expected = judge[0](str(face))[0].split("\n\n")[1]  # the probability line, as the page must show it
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "big.png").write_bytes(os.urandom(1_500_000))
    port = free_port()
    server = subprocess.Popen([sys.executable, "app.py", str(tiny_run["best"]), "--port", str(port),
                               "--max-upload-mb", "1"], cwd=ROOT,
                              env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    options = Options()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(flag)
    driver = None
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_served(url, server)
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
        wait = WebDriverWait(driver, 60)
        driver.get(url)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"))
        driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(face))
        wait.until(lambda d: "P(fake)" in d.find_element(By.ID, "verdict").text)
        verdict = driver.find_element(By.ID, "verdict").text
        assert re.search(r"Verdict: (REAL|FAKE)", verdict)
        assert expected.replace("**", "") in verdict
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#overlay img"))
        for refused, message in (("notes.txt", "Invalid file type: notes.txt"),
                                 ("big.png", 'exceed the maximum allowed size of 1.0 Mb: "big.png"')):
            driver.get(url)  # a fresh page: the file is refused with a message
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"))
            driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(tmp_path / refused))
            wait.until(lambda d: message in d.find_element(By.TAG_NAME, "body").text)
            assert "P(fake)" not in driver.find_element(By.ID, "verdict").text
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(timeout=30)
