"""careid's OpenID Connect provider, checked by an independent client (Authlib and requests).

Run by `crates/careid/tests/binary.rs` against a real careid server, a real `careid agent`
holding a virtual card, and the demo relying application (examples/relying-app/app.py):

    oidc_client.py signed-in CAREID_URL APP_URL AGENT_URL CLIENT_ID CLIENT_SECRET STATE_FILE
    oidc_client.py ended     CAREID_URL APP_URL AGENT_URL CLIENT_ID CLIENT_SECRET STATE_FILE
    oidc_client.py browser   CAREID_URL APP_URL AGENT_URL CLIENT_ID CLIENT_SECRET STATE_FILE

The browser phase signs in through the demo application in headless Chromium (Selenium):
careid's authorize page runs its own script, which asks the agent for the card's approval.
The signed-in phase plays the browser through the demo application's sign-in, then checks the
protocol's edges with a client of its own; the second (after the test took the card out)
checks that the application's session and every token died. Each check prints what it
proved; any failure exits non-zero with the reason.
"""

import base64
import json
import os
import re
import sys
import time
from urllib.parse import parse_qs, urlparse

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, JsonWebToken
from authlib.oidc.core import CodeIDToken

phase, careid, app, agent, client_id, client_secret, state_file = sys.argv[1:8]
config = requests.get(careid + "/.well-known/openid-configuration", timeout=10).json()
keys = JsonWebKey.import_key_set(requests.get(config["jwks_uri"], timeout=10).json())
basic = (client_id, client_secret)
# Local programs present the key the agent wrote for its user.
keyed = {"Authorization": "Bearer " + os.environ.get("CAREID_AGENT_KEY", "")}


def check(condition, what):
    if not condition:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


def approve(browser, authorize_url, origin=careid):
    """What careid's page does: find the request's id, and ask the agent for the card's approval."""
    page = browser.get(authorize_url, timeout=10)
    check(page.status_code == 200, f"the authorize page loads ({page.status_code})")
    csp = page.headers.get("Content-Security-Policy", "")
    check(f"connect-src {agent}" in csp and "frame-ancestors 'none'" in csp, "the page may talk only to the local agent")
    authorization = re.search(r'data-request="([0-9a-f]+)"', page.text).group(1)
    answer = requests.post(
        agent + "/v1/authorize", json={"authorization": authorization}, headers={"Origin": origin}, timeout=30
    )
    return authorization, answer


def own_flow(browser, verifier=None):
    """An authorization of the test's own, up to the code (not exchanged)."""
    verifier = verifier or generate_token(64)
    nonce = generate_token(24)
    client = OAuth2Session(
        client_id, client_secret, scope="openid profile", redirect_uri=app + "/callback", code_challenge_method="S256"
    )
    url, state = client.create_authorization_url(config["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
    _, answer = approve(browser, url)
    check(answer.status_code == 200, f"the agent's card approved ({answer.status_code})")
    redirect = answer.json()["redirect"]
    query = parse_qs(urlparse(redirect).query)
    check(query["state"] == [state], "the state comes back unchanged")
    return client, redirect, query["code"][0], verifier, nonce


def token_request(code, verifier, redirect_uri=None):
    return requests.post(
        config["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri or app + "/callback",
            "code_verifier": verifier,
        },
        auth=basic,
        timeout=10,
    )


def introspect(token):
    answer = requests.post(config["introspection_endpoint"], data={"token": token}, auth=basic, timeout=10)
    answer.raise_for_status()
    return answer.json()


def signed_in():
    check(config["issuer"] == careid, "discovery names this careid as the issuer")
    check(config["code_challenge_methods_supported"] == ["S256"], "PKCE is S256 only")
    check(keys.keys[0].as_dict()["alg"] == "ES256", "the published key is ES256")

    # The demo application's sign-in, as a browser goes through it.
    browser = requests.Session()
    login = browser.get(app + "/login", allow_redirects=False, timeout=10)
    check(login.status_code == 302 and login.headers["Location"].startswith(config["authorization_endpoint"]),
          "the application sends the browser to careid")
    _, foreign = approve(browser, login.headers["Location"], origin="https://evil.example")
    check(foreign.status_code == 403, "the agent refuses a page from another origin")
    _, answer = approve(browser, login.headers["Location"])
    check(answer.status_code == 200, f"the agent's card approved ({answer.status_code})")
    check(answer.headers.get("Access-Control-Allow-Origin") == careid, "the agent answers careid's page only")
    home = browser.get(answer.json()["redirect"], timeout=10)
    check(home.status_code == 200 and "Signed in as" in home.text, "the application shows who signed in")
    who = browser.get(app + "/whoami", timeout=10).json()
    claims = who["claims"]
    check(who["signed_in"], "the application holds a session")
    check(re.fullmatch(r"\d{12}", claims["sub"]) and claims["uid"] == claims["sub"], "sub and uid are the 12-digit id")
    check(claims["acr"] == "AAL3_ANY" and claims["amr"] == ["sc", "pin"], "a card login is AAL3 by smart card and PIN")
    check(claims["authentication_assurance_level"] == "3" and claims["id_assurance_level"] == "3", "assurance levels")
    roles = claims["nhsid_nrbac_roles"]
    selected = [r for r in roles if r["person_roleid"] == claims["selected_roleid"]]
    check(len(selected) == 1 and re.fullmatch(r"S\d{4}:G\d{4}:R\d{4,5}", selected[0]["role_code"]),
          "the selected role is one of the national RBAC roles, with its code triple")
    check(all({"org_code", "role_name", "activity_codes"} <= set(r) for r in roles), "roles carry org, name, activities")
    check(claims["nhsid_user_orgs"] and claims["sid"] and claims["auth_time"], "orgs, sid and auth_time are present")
    check(who["userinfo"]["sub"] == claims["sub"], "userinfo answers for the same person")

    # The protocol's edges, with a client of this test's own.
    client, _, code, verifier, nonce = own_flow(browser)
    bad = token_request(code, generate_token(64))
    check(bad.status_code == 400 and bad.json()["error"] == "invalid_grant", "a PKCE mismatch is refused")
    bad = token_request(code, verifier, app + "/elsewhere")
    check(bad.status_code == 400 and bad.json()["error"] == "invalid_grant", "another redirect_uri is refused")
    wrong = requests.post(config["token_endpoint"], data={"grant_type": "authorization_code", "code": code,
                          "redirect_uri": app + "/callback", "code_verifier": verifier},
                          auth=(client_id, "careid-client-wrong"), timeout=10)
    check(wrong.status_code == 401 and wrong.json()["error"] == "invalid_client", "a wrong client secret is refused")
    token = client.fetch_token(config["token_endpoint"], code=code, code_verifier=verifier)
    jwt = JsonWebToken(["ES256"])
    id_claims = jwt.decode(token["id_token"], keys, claims_cls=CodeIDToken,
                           claims_options={"iss": {"essential": True, "value": careid}},
                           claims_params={"nonce": nonce, "client_id": client_id})
    id_claims.validate(leeway=10)
    check(id_claims["aud"] == client_id, "the ID token verifies against the JWKS, for this client, with the nonce")
    check(introspect(token["access_token"])["active"], "introspection: the access token is active")
    header, payload, signature = token["access_token"].split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged["sub"] = "999999999999"
    forged_payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip("=")
    tampered = f"{header}.{forged_payload}.{signature}"
    userinfo = requests.get(config["userinfo_endpoint"], headers={"Authorization": f"Bearer {tampered}"}, timeout=10)
    check(userinfo.status_code == 401, "userinfo refuses a tampered access token")
    check(not introspect(tampered)["active"], "introspection: a tampered token is not active")
    none_alg = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').decode().rstrip("=")
    check(not introspect(f"{none_alg}.{payload}.")["active"], "introspection: alg none is not accepted")
    again = token_request(code, verifier)
    check(again.status_code == 400 and again.json()["error"] == "invalid_grant", "a reused code is refused")
    check(not introspect(token["access_token"])["active"], "a reused code revoked the token issued with it")

    # Revocation (RFC 7009).
    client, _, code, verifier, _ = own_flow(browser)
    token = client.fetch_token(config["token_endpoint"], code=code, code_verifier=verifier)
    revoked = requests.post(config["revocation_endpoint"], data={"token": token["access_token"]}, auth=basic, timeout=10)
    check(revoked.status_code == 200 and not introspect(token["access_token"])["active"], "a revoked token is dead")

    # The agent's local endpoint: token exchange (RFC 8693) for a local application.
    unkeyed = requests.post(agent + "/v1/token", json={"audience": client_id}, timeout=30)
    check(unkeyed.status_code == 401, "the agent gives no token to a program without its key")
    forged = requests.post(agent + "/v1/token", json={"audience": client_id}, headers={"Origin": careid}, timeout=30)
    check(forged.status_code == 401, "nor to a caller that only claims careid's origin")
    exchanged = requests.post(agent + "/v1/token", json={"audience": client_id}, headers=keyed, timeout=30)
    check(exchanged.status_code == 200, f"the agent exchanges the card session for a token ({exchanged.status_code})")
    exchanged = exchanged.json()
    check(exchanged["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token", "issued_token_type")
    check(introspect(exchanged["access_token"])["active"], "the exchanged token is active")
    unknown = requests.post(agent + "/v1/token", json={"audience": "no-such-app"}, headers=keyed, timeout=30)
    check(unknown.status_code == 409, "no token for an application the holder declined")
    with open(state_file, "w") as f:
        json.dump({"exchanged": exchanged["access_token"], "cookies": browser.cookies.get_dict()}, f)


def ended():
    with open(state_file) as f:
        saved = json.load(f)
    browser = requests.Session()
    browser.cookies.update(saved["cookies"])
    deadline = time.time() + 15
    who = {}
    while time.time() < deadline:
        who = browser.get(app + "/whoami", timeout=10).json()
        if not who["signed_in"]:
            break
        time.sleep(0.2)
    check(not who["signed_in"] and who["ended"], "the application's session ended by back-channel logout")
    check(not introspect(saved["exchanged"])["active"], "the session's exchanged token is dead")
    refused = requests.post(agent + "/v1/token", json={"audience": client_id}, headers=keyed, timeout=30)
    check(refused.status_code == 409, "with no card, the agent gives no token")


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    for flag in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]:
        options.add_argument(flag)
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(app + "/")
        driver.find_element(By.ID, "login").click()
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "who") or d.find_elements(By.ID, "error"))
        errors = driver.find_elements(By.ID, "error") + driver.find_elements(By.ID, "status")
        check(driver.find_elements(By.ID, "who"), "Chromium: careid's page had the card approve, and the application "
              f"signed the holder in ({[e.text for e in errors]})")
        claims = json.loads(driver.find_element(By.ID, "claims").text)
        check(claims["acr"] == "AAL3_ANY" and claims["nhsid_nrbac_roles"], "Chromium: the application shows the claims")
        # The page refuses to work inside a frame, and scripts it did not sign.
        login = requests.get(app + "/login", allow_redirects=False, timeout=10).headers["Location"]
        csp = requests.get(login, timeout=10).headers["Content-Security-Policy"]
        check("script-src 'nonce-" in csp, "the authorize page runs only its own script")
        driver.get(app + "/logout")
    finally:
        driver.quit()


{"signed-in": signed_in, "ended": ended, "browser": browser}[phase]()
print("all checks passed")
