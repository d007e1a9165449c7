"""The chat page of jarip serve in a real browser: headless Chromium (Debian's
chromium + chromium-driver, driven by Selenium) loads /, sends a message,
sees the answer stream into the page, sends a second turn, and uses the stop
button. Saves a screenshot as serve_page.png in the test's output directory
(BUILD/testdata, or JARIP_TEST_OUT). Skips cleanly without chromium or selenium.
Usage: test_serve_page.py path/to/jarip"""
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve_fixture as fx  # noqa: E402

JARIP = os.path.abspath(sys.argv[1])
try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    print("skip: selenium is not installed (scripts/setup.sh installs it)")
    sys.exit(0)
DRIVER = shutil.which("chromedriver")
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
if not DRIVER or not BROWSER:
    print("skip: chromium and chromium-driver are not installed (scripts/setup.sh installs them)")
    sys.exit(0)

failures = 0


def check(cond, msg):
    global failures
    print(("ok: " if cond else "FAIL: ") + msg)
    failures += not cond


def main():
    out_dir = os.environ.get("JARIP_TEST_OUT") or os.path.join(os.path.dirname(JARIP), "testdata")
    os.makedirs(out_dir, exist_ok=True)
    work = fx.workdir()
    model, smol = fx.model_path(JARIP, work)
    srv = fx.Server(JARIP, model, "--slots", "1", "--ctx", "512" if smol else "256", "--threads", "2")
    opts = webdriver.ChromeOptions()
    opts.binary_location = BROWSER
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=900,700",
              f"--user-data-dir={work}/chrome", "--no-proxy-server"]:
        opts.add_argument(a)
    drv = None
    try:
        try:
            drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
        except Exception as e:  # a browser that cannot start here is an environment problem, said plainly
            print(f"skip: chromium did not start: {str(e).splitlines()[0]}")
            return 0
        drv.set_page_load_timeout(30)
        drv.get(srv.url + "/")
        check("jarip chat" in drv.title, f"the page loads (title {drv.title!r})")
        wait = WebDriverWait(drv, 60, poll_frequency=0.05)
        wait.until(lambda d: d.find_element(By.ID, "model").text)
        # the settings: a system prompt and an answer length (the second turn must end in time under ASan)
        drv.find_element(By.TAG_NAME, "summary").click()
        drv.find_element(By.ID, "system").send_keys("You are a helpful assistant.")
        drv.find_element(By.ID, "maxtok").send_keys("48")
        box = drv.find_element(By.ID, "input")
        box.send_keys("What is the capital of France?" if smol else "The king")
        drv.find_element(By.ID, "send").click()
        # streamed: the stop button is enabled while text appears, before the answer ends
        seen_partial = False
        t0 = time.time()
        while time.time() - t0 < 60:
            ans = drv.find_elements(By.CSS_SELECTOR, ".assistant")
            stop_on = drv.find_element(By.ID, "stop").is_enabled()
            if ans and ans[-1].text and stop_on:
                seen_partial = True
            if ans and ans[-1].text and not stop_on:
                break
            time.sleep(0.02)
        answer = drv.find_elements(By.CSS_SELECTOR, ".assistant")[-1].text
        check(len(answer) > 0, f"the answer streams into the page ({answer[:60]!r})")
        if smol:
            check(seen_partial, "text was visible while the stop button was still enabled (streaming)")
        else:
            print("note: the tiny model answers too fast to watch it stream or to stop it; those checks need SmolLM2")
        check(not drv.find_elements(By.CSS_SELECTOR, ".error"), "no error shown")
        # a second turn: the page sends the whole conversation
        box.send_keys("And of Germany?" if smol else "A dog")
        drv.find_element(By.ID, "send").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".assistant")) == 2
                   and (d.find_elements(By.CSS_SELECTOR, ".assistant")[1].text or not smol)
                   and not d.find_element(By.ID, "stop").is_enabled())
        check(len(drv.find_elements(By.CSS_SELECTOR, ".user")) == 2, "multi-turn: two user messages, two answers")
        # the stop button ends an answer as it streams (no length limit now)
        drv.find_element(By.ID, "maxtok").clear()
        box.send_keys("Write a long story about a dragon." if smol else "The queen")
        drv.find_element(By.ID, "send").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".assistant")) == 3
                   and (d.find_elements(By.CSS_SELECTOR, ".assistant")[2].text or not smol))
        stopped_while_running = drv.find_element(By.ID, "stop").is_enabled()
        if stopped_while_running:
            drv.find_element(By.ID, "stop").click()
        wait.until(lambda d: not d.find_element(By.ID, "stop").is_enabled())
        frozen = drv.find_elements(By.CSS_SELECTOR, ".assistant")[2].text
        time.sleep(0.5)
        if smol:
            check(stopped_while_running and drv.find_elements(By.CSS_SELECTOR, ".assistant")[2].text == frozen,
                  f"the stop button ends the stream ({len(frozen)} characters kept)")
        shot = os.path.join(out_dir, "serve_page.png")
        drv.save_screenshot(shot)
        check(os.path.getsize(shot) > 1000, f"screenshot saved: {shot}")
    finally:
        if drv:
            drv.quit()
        code = srv.stop()
        shutil.rmtree(work, ignore_errors=True)
    check(code == 0, "the server stops cleanly")
    print(f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
