"""careid's web console in headless Chromium, one role per run.

Usage: console_browser.py URL ROLE SHOTS AXE STATE
  URL    careid's address; ROLE one of holder, ra-agent, sponsor, privacy-officer, ra-manager,
         id-checker;
  SHOTS  the folder screenshots go to; AXE axe-core's axe.min.js;
  STATE  a JSON file of what the test knows (credentials, people) and where the run and the
         test signal each other (the holder's card is taken out half way).

Each run signs in (with the card through the workstation agent, or, for the ID checker who
has no card, with an interim credential), visits the role's pages checking each with axe-core (WCAG 2.2 A and AA: no
violation allowed) and saving a screenshot, does the role's main task, and is refused out of
scope. Prints "all checks passed" at the end; any failed check raises.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

url, role, shots, axe_path, state_file = sys.argv[1:6]
with open(state_file) as f:
    state = json.load(f)
with open(axe_path) as f:
    axe_source = f.read()
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


def check(condition, what):
    if not condition:
        raise SystemExit(f"FAILED ({role}): {what}")
    print(f"ok ({role}): {what}")


def open_browser():
    options = webdriver.ChromeOptions()
    for flag in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1000"]:
        options.add_argument(flag)
    options.binary_location = "/usr/bin/chromium"
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


driver = open_browser()
visited = []


def visit(path, name):
    """Opens a page, checks it with axe-core, saves its screenshot."""
    driver.get(url + path)
    return inspect(name)


def inspect(name):
    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")
    # axe-core runs through the driver, not as a page script: the console's CSP allows none.
    driver.execute_script(axe_source)
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: arguments[0]}}).then(r => done(r.violations));",
        AXE_TAGS,
    )
    summary = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in result]
    check(not result, f"axe-core finds no WCAG 2.2 AA violation on {name}: {summary}")
    driver.save_screenshot(os.path.join(shots, f"{role}-{name}.png"))
    visited.append(name)
    return driver.page_source


def main_text():
    return driver.find_element(By.ID, "main").text


def post_first(form_selector):
    driver.find_element(By.CSS_SELECTOR, form_selector + " button[type=submit]").click()


def sign_in_with_card():
    driver.get(url + "/console/sign-in")
    WebDriverWait(driver, 40).until(lambda d: d.current_url.rstrip("/").endswith("/console"))
    check("Signed in as" in driver.page_source, "the card signed the holder in through the agent")


def refused(path, name):
    page = visit(path, name)
    check("Not done" in page and "rule" in page.lower(), f"{path} is refused out of scope, with the rule")


try:
    # Anonymous: every page but the sign-in page sends you to sign in, and shows nothing.
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    try:
        anonymous = urllib.request.build_opener(NoRedirect).open(url + "/console/activity", timeout=10)
        status, location = anonymous.status, anonymous.headers.get("Location")
    except urllib.error.HTTPError as e:
        status, location = e.code, e.headers.get("Location")
    check(status == 303 and location == "/console/sign-in", f"an anonymous browser is sent to sign in ({status})")
    try:
        root = urllib.request.build_opener(NoRedirect).open(url + "/", timeout=10)
        status, location = root.status, root.headers.get("Location")
    except urllib.error.HTTPError as e:
        status, location = e.code, e.headers.get("Location")
    check(status == 303 and location == "/console/", f"careid's root opens the console ({status})")

    if role == "id-checker":
        driver.get(url + "/console/sign-in?ended=signed_out")
        inspect("sign-in")
        driver.find_element(By.ID, "credential").send_keys("careid-interim-wrong")
        driver.find_element(By.CSS_SELECTOR, "form[action='/console/sign-in/credential'] button").click()
        page = inspect("sign-in-refused")
        check("not accepted" in page and "/console/sign-in" in driver.current_url, "a wrong credential is refused")
        driver.find_element(By.ID, "credential").send_keys(state["interim_credential"])
        driver.find_element(By.CSS_SELECTOR, "form[action='/console/sign-in/credential'] button").click()
        WebDriverWait(driver, 20).until(lambda d: d.current_url.rstrip("/").endswith("/console"))
        page = inspect("home")
        check("interim_credential" in page, "someone without a card signs in with their interim credential")
        visit("/console/people?family_name=" + state["search"], "people")
        refused("/console/dashboard", "refused")
    else:
        sign_in_with_card()
        inspect("home")

    if role == "ra-manager":
        page = visit("/console/dashboard", "dashboard")
        check(page.count("<svg") >= 4, "the dashboard draws its charts as SVG")
        check("Logins per hour" in page and "Registration coverage" in page, "the dashboard's charts are there")
        check(page.count("The figures as a table") >= 4, "each chart has its figures as a table")
        visit("/console/queue", "queue")
        visit("/console/organisations?q=Surgery", "organisations")
        page = visit("/console/organisations/F83001", "organisation")
        check("Positions, with their national job role" in page and "S0080:G0440:R8009" in page, "an organisation with its positions")
        visit("/console/people?family_name=" + state["search"], "people")
        page = visit("/console/people/" + state["holder"], "person")
        check("Identity checks" in page, "the RA Manager sees the identity checks")
        visit("/console/cases", "cases")
        visit("/console/alerts", "alerts")
        visit("/console/terms", "terms")
        # Bulk import: a preview names the row that is wrong and imports nothing; then the batch.
        header = "given_name,family_name,date_of_birth,ni_number,email,position,start"
        good = f"Ivy,Importer,1990-02-03,JK654321C,,{state['position']},2026-01-05"
        visit("/console/import", "import")
        driver.find_element(By.ID, "csv").send_keys(f"{header}\n{good}\nIan,Importer,1990-13-40,JK654322C,,{state['position']},2026-01-05")
        driver.find_element(By.CSS_SELECTOR, "form[action='/console/import/preview'] button").click()
        page = inspect("import-preview-errors")
        check("1 of 2 rows have errors" in page and "date_of_birth" in page, "the preview names the bad row and field")
        driver.get(url + "/console/import")
        driver.find_element(By.ID, "csv").send_keys(f"{header}\n{good}")
        driver.find_element(By.CSS_SELECTOR, "form[action='/console/import/preview'] button").click()
        inspect("import-preview")
        driver.find_element(By.CSS_SELECTOR, "form[action='/console/import'] button").click()
        page = inspect("imported")
        check("1 people imported" in page, "the RA Manager imports a batch after its preview")

    if role == "holder":
        page = visit("/console/activity", "activity")
        check(state["holder"] in page, "my activity lists the holder's own records")
        # Not me: on the newest record of the holder's own doing.
        driver.find_element(By.CSS_SELECTOR, "details.inline summary").click()
        field = driver.find_element(By.CSS_SELECTOR, "details.inline[open] input[name=comment]")
        field.send_keys("I was not at work then")
        driver.find_element(By.CSS_SELECTOR, "details.inline[open] button[type=submit]").click()
        page = inspect("not-me")
        check("Reported: not you" in page, "the holder says a record was not them")
        link = driver.find_element(By.PARTIAL_LINK_TEXT, "Back to my activity")
        link.click()
        # The oldest record on the page: the newest may wait a second for its signed checkpoint.
        driver.find_elements(By.PARTIAL_LINK_TEXT, "Proof")[-1].click()
        page = inspect("proof")
        check("Inclusion proof" in page and "Signed checkpoint" in page, "a record's proof is shown")
        page = visit("/console/sessions", "sessions")
        check("(this one)" in page, "my sessions shows the card session")
        page = visit("/console/card", "card")
        check("Report this card" in page, "my card offers to report it")
        refused("/console/dashboard", "refused")
        # The card leaves the reader: the console's session ends with the card session.
        open(state["signal"], "w").write("take the card out")
        deadline = time.time() + 40
        ended = False
        while time.time() < deadline and not ended:
            time.sleep(0.5)
            driver.get(url + "/console/sessions")
            ended = "/console/sign-in" in driver.current_url
        check(ended, "with the card out of the reader, the console sends the holder to sign in")
        check("the card left the reader" in driver.page_source, "and says why")
        check(driver.find_element(By.ID, "retry").is_displayed(), "and waits to be asked before asking the card again")

    if role == "ra-agent":
        page = visit("/console/queue", "queue")
        before = page.count("/grant")
        check(before >= 1, "the work queue lists requests to decide")
        post_first("form[action$='/grant']")
        page = inspect("granted")
        check(page.count("/grant") == before - 1, "granting a request takes it off the queue")
        # The identity check at the desk: three documents, and the profile is created.
        visit("/console/queue", "queue-before-check")
        driver.find_element(By.CSS_SELECTOR, "form[action$='/verify']").find_element(By.XPATH, "..").find_element(By.TAG_NAME, "summary").click()
        form = driver.find_element(By.CSS_SELECTOR, "details[open] form[action$='/verify']")
        for n, (kind, number) in enumerate([("passport", "501234567"), ("utility_bill", "E123"), ("bank_statement", "9911")], 1):
            form.find_element(By.NAME, f"kind{n}").send_keys(kind.replace("_", " "))
            form.find_element(By.NAME, f"number{n}").send_keys(number)
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        page = inspect("verified")
        check("Positions over time" in page and "/console/people/" in driver.current_url, "the identity check creates the profile")
        # A locked card unlocked from its holder's profile: the agent runs the ceremony on its
        # ceremony reader, the holder types the new passcode there.
        page = visit("/console/people/" + state["locked_holder"], "person-locked-card")
        unlock = f"button[data-ceremony='unlock'][data-card='{state['locked_card']}']"
        driver.find_element(By.CSS_SELECTOR, unlock).click()
        WebDriverWait(driver, 60).until(lambda d: not d.find_elements(By.CSS_SELECTOR, unlock))
        page = inspect("card-unlocked")
        check("active" in page and f"data-ceremony=\"renew\" data-card=\"{state['locked_card']}\"" in page,
              "the RA agent unlocks a card from the console, through the agent's ceremony reader")
        visit("/console/people?family_name=" + state["search"], "people")
        page = visit("/console/people/" + state["holder"], "person")
        check("Positions over time" in page and "Cards and certificates" in page, "a profile in scope, with cards")
        check("Live sessions" in page and "Record an absence" in page, "with their live sessions and leave")
        refused("/console/dashboard", "refused")

    if role == "sponsor":
        page = visit("/console/team", "team")
        check("Requests at your organisation" in page, "the sponsor sees their team's requests")
        page = visit("/console/people/" + state["holder"], "person")
        driver.find_element(By.ID, "kind").send_keys("Annual leave")
        for field, day in [("first_day", state["leave_from"]), ("last_day", state["leave_to"])]:
            box = driver.find_element(By.ID, field)
            driver.execute_script("arguments[0].value = arguments[1]", box, day)
        driver.find_element(By.CSS_SELECTOR, "form[action$='/absences'] button[type=submit]").click()
        page = inspect("leave-recorded")
        check(state["leave_from"] in page, "the sponsor records a team member's leave, and sees it")
        refused("/console/cases", "refused")
        visit("/console/register", "register")
        for field, value in [("given_name", "Pia"), ("family_name", "Prereg"), ("ni_number", "JK777111A")]:
            driver.find_element(By.ID, field).send_keys(value)
        driver.execute_script("arguments[0].value = '1992-05-06'", driver.find_element(By.ID, "date_of_birth"))
        driver.find_element(By.CSS_SELECTOR, "form[action='/console/register'] button[type=submit]").click()
        page = inspect("pre-registered")
        check("waits for the RA's identity check" in page, "the sponsor pre-registers someone")

    if role == "privacy-officer":
        page = visit("/console/cases", "cases")
        driver.find_element(By.CSS_SELECTOR, "a[href^='/console/cases/']").click()
        inspect("case")
        driver.find_element(By.ID, "note").send_keys("spoke to the practice manager")
        driver.find_element(By.CSS_SELECTOR, "form[action$='/notes'] button[type=submit]").click()
        page = inspect("case-noted")
        check("spoke to the practice manager" in page, "the privacy officer adds a note to a case")
        page = visit("/console/alerts", "alerts")
        check("Alerts in your scope" in page and "Patient-access alerts" in page, "the alert queues are shown")
        refused("/console/dashboard", "refused")

    # Every form carries the browser's token: one posted without it changes nothing.
    if role != "holder":
        cookie = "; ".join(f"{c['name']}={c['value']}" for c in driver.get_cookies())
        forged = urllib.request.Request(url + "/console/sign-out", data=b"csrf=forged", headers={"Cookie": cookie})
        try:
            status = urllib.request.urlopen(forged, timeout=10).status
        except urllib.error.HTTPError as e:
            status = e.code
        check(status == 403, f"a form without the browser's token is refused ({status})")
        driver.get(url + "/console/")
        check("Signed in as" in driver.page_source, "and changed nothing: still signed in")
        driver.find_element(By.CSS_SELECTOR, "form[action='/console/sign-out'] button").click()
        WebDriverWait(driver, 20).until(lambda d: "/console/sign-in" in d.current_url)
        check("signed out" in driver.page_source, "signing out ends the console session")
        inspect("signed-out")
        driver.get(url + "/console/")
        check("/console/sign-in" in driver.current_url, "and its cookie opens nothing")
    print(f"pages checked: {', '.join(visited)}")
finally:
    driver.quit()
print("all checks passed")
