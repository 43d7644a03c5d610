"""A tiny clinical application that signs its users in through careid.

It is an ordinary OpenID Connect relying party built on Authlib, an independent client
library: discovery, the authorization code flow with PKCE (S256) and a nonce, the ID token
checked against careid's published keys (ES256), userinfo, and back-channel logout, which ends
the application's session when the careid session behind it ends (the card left the reader).

    pip install authlib requests
    CAREID_ISSUER=http://127.0.0.1:8420 CLIENT_ID=demo-records CLIENT_SECRET=... \
        python3 examples/relying-app/app.py --port 8500

Register it first (as an RA Manager):

    careid client register demo-records --name "Demo records" \
        --redirect-uri http://127.0.0.1:8500/callback \
        --backchannel-logout-uri http://127.0.0.1:8500/backchannel-logout

Pages: / (who is signed in, with the claims careid sent), /login, /callback, /logout,
/whoami (the same as JSON), and POST /backchannel-logout (careid calls it).
"""

import argparse
import html
import json
import os
import secrets
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, JsonWebToken
from authlib.oidc.core import CodeIDToken

LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
SCOPE = "openid profile nationalrbacaccess associatedorgs"


class Provider:
    """careid, as discovery describes it."""

    def __init__(self, issuer, client_id, client_secret, redirect_uri):
        self.issuer = issuer.rstrip("/")
        self.config = requests.get(self.issuer + "/.well-known/openid-configuration", timeout=10).json()
        if self.config["issuer"] != self.issuer:
            raise SystemExit(f"discovery names issuer {self.config['issuer']!r}, not {self.issuer!r}")
        self.keys = JsonWebKey.import_key_set(requests.get(self.config["jwks_uri"], timeout=10).json())
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.jwt = JsonWebToken(["ES256"])

    def session(self):
        return OAuth2Session(
            self.client_id,
            self.client_secret,
            scope=SCOPE,
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_basic",
        )

    def id_token_claims(self, id_token, nonce):
        options = {"iss": {"essential": True, "value": self.issuer}}
        claims = self.jwt.decode(
            id_token,
            self.keys,
            claims_cls=CodeIDToken,
            claims_options=options,
            claims_params={"nonce": nonce, "client_id": self.client_id},
        )
        claims.validate(leeway=10)
        return dict(claims)

    def logout_claims(self, logout_token):
        options = {
            "iss": {"essential": True, "value": self.issuer},
            "aud": {"essential": True, "value": self.client_id},
            "events": {"essential": True},
        }
        claims = self.jwt.decode(logout_token, self.keys, claims_options=options)
        claims.validate(leeway=10)
        if LOGOUT_EVENT not in claims["events"] or "nonce" in claims or not claims.get("sid"):
            raise ValueError("not a back-channel logout token")
        return dict(claims)


class App:
    def __init__(self, provider):
        self.provider = provider
        self.lock = threading.Lock()
        self.pending = {}  # state -> (code_verifier, nonce)
        self.sessions = {}  # cookie -> {"claims", "userinfo", "sid", "ended"}

    def begin(self):
        verifier = generate_token(64)
        nonce = generate_token(24)
        client = self.provider.session()
        url, state = client.create_authorization_url(
            self.provider.config["authorization_endpoint"], code_verifier=verifier, nonce=nonce
        )
        with self.lock:
            self.pending[state] = (verifier, nonce)
        return url

    def finish(self, callback_url):
        query = parse_qs(urlparse(callback_url).query)
        if "error" in query:
            raise ValueError(f"careid refused: {query['error'][0]}: {query.get('error_description', [''])[0]}")
        state = query.get("state", [""])[0]
        with self.lock:
            verifier, nonce = self.pending.pop(state)
        client = self.provider.session()
        token = client.fetch_token(
            self.provider.config["token_endpoint"],
            authorization_response=callback_url,
            code_verifier=verifier,
        )
        claims = self.provider.id_token_claims(token["id_token"], nonce)
        userinfo = requests.get(
            self.provider.config["userinfo_endpoint"],
            headers={"Authorization": f"Bearer {token['access_token']}"},
            timeout=10,
        )
        userinfo.raise_for_status()
        cookie = secrets.token_urlsafe(24)
        with self.lock:
            self.sessions[cookie] = {
                "claims": claims,
                "userinfo": userinfo.json(),
                "sid": claims["sid"],
                "ended": None,
            }
        return cookie

    def end_sid(self, sid, why):
        with self.lock:
            for session in self.sessions.values():
                if session["sid"] == sid and not session["ended"]:
                    session["ended"] = why


def handler(app):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):
            sys.stderr.write("relying-app: " + fmt % args + "\n")

        def session(self):
            for part in self.headers.get("Cookie", "").split(";"):
                name, _, value = part.strip().partition("=")
                if name == "rp_session":
                    return value, app.sessions.get(value)
            return None, None

        def send(self, status, body, content_type="text/html; charset=utf-8", headers=()):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def redirect(self, location, headers=()):
            self.send(302, "", headers=[("Location", location), *headers])

        def do_GET(self):
            path = urlparse(self.path).path
            _, session = self.session()
            if path == "/login":
                self.redirect(app.begin())
            elif path == "/callback":
                try:
                    cookie = app.finish(f"http://{self.headers['Host']}{self.path}")
                except Exception as e:  # shown to the user, as an application would
                    self.send(400, f"<h1>Sign-in failed</h1><p id='error'>{html.escape(str(e))}</p>")
                    return
                self.redirect("/", [("Set-Cookie", f"rp_session={cookie}; HttpOnly; SameSite=Lax; Path=/")])
            elif path == "/logout":
                self.redirect("/", [("Set-Cookie", "rp_session=; Max-Age=0; Path=/")])
            elif path == "/whoami":
                state = {"signed_in": False}
                if session:
                    state = {
                        "signed_in": session["ended"] is None,
                        "ended": session["ended"],
                        "claims": session["claims"],
                        "userinfo": session["userinfo"],
                    }
                self.send(200, json.dumps(state), "application/json")
            elif path == "/":
                if session and session["ended"] is None:
                    claims = session["claims"]
                    body = (
                        f"<h1 id='who'>Signed in as {html.escape(claims.get('name', claims['sub']))}</h1>"
                        f"<p>Acting as role {html.escape(claims['selected_roleid'])}, "
                        f"assurance {html.escape(claims['acr'])}.</p>"
                        f"<pre id='claims'>{html.escape(json.dumps(claims, indent=2))}</pre>"
                        "<p><a href='/logout'>Sign out</a></p>"
                    )
                elif session:
                    body = (
                        f"<h1 id='ended'>Your careid session ended ({html.escape(session['ended'])})</h1>"
                        "<p><a href='/login'>Sign in again with your card</a></p>"
                    )
                else:
                    body = "<h1 id='signed-out'>Demo records</h1><p><a id='login' href='/login'>Sign in with your card</a></p>"
                self.send(200, f"<!doctype html><html><head><title>Demo records</title></head><body>{body}</body></html>")
            else:
                self.send(404, "not found", "text/plain")

        def do_POST(self):
            if urlparse(self.path).path != "/backchannel-logout":
                self.send(404, "not found", "text/plain")
                return
            length = int(self.headers.get("Content-Length", "0"))
            form = parse_qs(self.rfile.read(length).decode())
            try:
                claims = app.provider.logout_claims(form["logout_token"][0])
            except Exception as e:
                self.send(400, json.dumps({"error": "invalid_request", "error_description": str(e)}), "application/json")
                return
            app.end_sid(claims["sid"], "careid ended the session")
            self.send(200, "", "text/plain")

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8500)
    args = parser.parse_args()
    issuer = os.environ.get("CAREID_ISSUER", "http://127.0.0.1:8420")
    redirect_uri = f"http://127.0.0.1:{args.port}/callback"
    provider = Provider(issuer, os.environ["CLIENT_ID"], os.environ["CLIENT_SECRET"], redirect_uri)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler(App(provider)))
    print(f"Demo records on http://127.0.0.1:{args.port}/ (signs in through {issuer})", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
