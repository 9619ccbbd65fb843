#!/usr/bin/env bash
# End-to-end check of the dev IdP with curl only (cookie jar, no redirect
# following), i.e. the same walk gatehouse's tests do. Exits non-zero on the
# first failed expectation. Needs: node, curl, openssl, jq.
set -euo pipefail

cd "$(dirname "$0")"
[ -d node_modules/oidc-provider ] || npm ci --silent

WORK=$(mktemp -d)
PORT=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
ISSUER="http://127.0.0.1:$PORT"
CLIENT=gatehouse
SECRET=gatehouse-dev-secret
REDIRECT=http://gatehouse.test/redirect

IDP_PORT=$PORT node server.mjs >"$WORK/idp.log" 2>&1 &
IDP_PID=$!
cleanup() {
  kill "$IDP_PID" 2>/dev/null || true
  wait "$IDP_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; echo "--- idp log:" >&2; cat "$WORK/idp.log" >&2; exit 1; }
step() { echo "==> $*"; }

for _ in $(seq 50); do
  grep -q "idp listening on $ISSUER" "$WORK/idp.log" && break
  sleep 0.1
done
grep -q "idp listening on $ISSUER" "$WORK/idp.log" || fail "server did not start"

# http JAR METHOD URL [curl args...]: sets STATUS, LOCATION (absolute), BODY.
http() {
  local jar=$1 method=$2 url=$3; shift 3
  STATUS=$(curl -sS -X "$method" -c "$jar" -b "$jar" -D "$WORK/h" -o "$WORK/b" -w '%{http_code}' "$@" "$url")
  BODY=$(cat "$WORK/b")
  LOCATION=$(tr -d '\r' <"$WORK/h" | sed -n 's/^[Ll]ocation: //p')
  # The IdP mixes relative (/interaction/..) and absolute Locations.
  case $LOCATION in /*) LOCATION="$ISSUER$LOCATION" ;; esac
}
expect() { [ "$STATUS" = "$1" ] || fail "$2: expected HTTP $1, got $STATUS: $BODY"; }
form_action() { grep -o '<form[^>]*action="[^"]*"' <<<"$BODY" | sed 's/.*action="//;s/"$//' | head -1; }
query_param() { node -e 'console.log(new URL(process.argv[1]).searchParams.get(process.argv[2]) ?? "")' "$1" "$2"; }
jwt_payload() { node -e 'console.log(Buffer.from(process.argv[1].split(".")[1],"base64url").toString())' "$1"; }

VERIFIER=$(openssl rand -base64 48 | tr '+/' '-_' | tr -d '=\n')
CHALLENGE=$(printf %s "$VERIFIER" | openssl dgst -sha256 -binary | base64 | tr '+/' '-_' | tr -d '=')

authorize_url() {  # CLIENT_ID STATE NONCE
  echo "$ISSUER/auth?response_type=code&client_id=$1&redirect_uri=$(jq -rn --arg u "$REDIRECT" '$u|@uri')&scope=openid%20email%20profile&state=$2&nonce=$3&code_challenge=$CHALLENGE&code_challenge_method=S256"
}

# sign_in JAR CLIENT_ID LOGIN STATE NONCE: walks login + consent, sets CALLBACK.
sign_in() {
  local jar=$1 client=$2 login=$3 state=$4 nonce=$5
  http "$jar" GET "$(authorize_url "$client" "$state" "$nonce")"
  expect 303 "authorize"
  [[ $LOCATION == "$ISSUER/interaction/"* ]] || fail "authorize: unexpected Location $LOCATION"

  http "$jar" GET "$LOCATION"
  expect 200 "login page"
  grep -q 'name="prompt" value="login"' <<<"$BODY" || fail "login page: no prompt=login field"
  grep -q 'name="login"' <<<"$BODY" && grep -q 'name="password"' <<<"$BODY" || fail "login page: fields"
  http "$jar" POST "$(form_action)" --data-urlencode prompt=login --data-urlencode "login=$login" --data-urlencode password=anything
  expect 303 "login submit"
  [[ $LOCATION == "$ISSUER/auth/"* ]] || fail "login submit: unexpected Location $LOCATION"

  http "$jar" GET "$LOCATION"
  expect 303 "resume after login"
  [[ $LOCATION == "$ISSUER/interaction/"* ]] || fail "resume: unexpected Location $LOCATION"

  http "$jar" GET "$LOCATION"
  expect 200 "consent page"
  grep -q 'name="prompt" value="consent"' <<<"$BODY" || fail "consent page: no prompt=consent field"
  http "$jar" POST "$(form_action)" --data-urlencode prompt=consent
  expect 303 "consent submit"
  [[ $LOCATION == "$ISSUER/auth/"* ]] || fail "consent submit: unexpected Location $LOCATION"

  http "$jar" GET "$LOCATION"
  expect 303 "resume after consent"
  CALLBACK=$LOCATION
  [[ $CALLBACK == "$REDIRECT?"* ]] || fail "final redirect: unexpected Location $CALLBACK"
  [ "$(query_param "$CALLBACK" state)" = "$state" ] || fail "state not echoed"
  [ "$(query_param "$CALLBACK" iss)" = "$ISSUER" ] || fail "iss (RFC 9207) missing"
}

token_request() {  # curl args...
  STATUS=$(curl -sS -o "$WORK/b" -w '%{http_code}' "$@" "$ISSUER/token")
  BODY=$(cat "$WORK/b")
}

step "discovery"
http "$WORK/none" GET "$ISSUER/.well-known/openid-configuration"
expect 200 discovery
jq -r '{issuer, authorization_endpoint, token_endpoint, userinfo_endpoint, revocation_endpoint, end_session_endpoint}' <<<"$BODY"

step "sign-in as alice (client $CLIENT, client_secret_basic)"
sign_in "$WORK/jar" "$CLIENT" alice s-1 n-1
echo "callback: $CALLBACK"
CODE=$(query_param "$CALLBACK" code)

step "code exchange"
token_request -u "$CLIENT:$SECRET" -d grant_type=authorization_code -d "code=$CODE" \
  --data-urlencode "redirect_uri=$REDIRECT" -d "code_verifier=$VERIFIER"
expect 200 "token"
jq -e '.access_token and .id_token and .refresh_token and .token_type == "Bearer"' <<<"$BODY" >/dev/null \
  || fail "token response incomplete: $BODY"
ID_TOKEN=$(jq -r .id_token <<<"$BODY")
ACCESS_TOKEN=$(jq -r .access_token <<<"$BODY")
REFRESH_TOKEN=$(jq -r .refresh_token <<<"$BODY")
jq '{token_type, expires_in, scope}' <<<"$BODY"
CLAIMS=$(jwt_payload "$ID_TOKEN")
echo "id_token payload:"; jq . <<<"$CLAIMS"
jq -e --arg iss "$ISSUER" '.sub == "alice" and .email == "alice@example.com" and .email_verified == true
  and .name == "Alice" and .preferred_username == "alice" and .nonce == "n-1"
  and .iss == $iss and .aud == "gatehouse"' <<<"$CLAIMS" >/dev/null || fail "id_token claims"

step "userinfo"
STATUS=$(curl -sS -o "$WORK/b" -w '%{http_code}' -H "Authorization: Bearer $ACCESS_TOKEN" "$ISSUER/me")
BODY=$(cat "$WORK/b"); expect 200 userinfo; echo "$BODY"
jq -e '.sub == "alice" and .email == "alice@example.com"' <<<"$BODY" >/dev/null || fail "userinfo claims"

step "refresh"
token_request -u "$CLIENT:$SECRET" -d grant_type=refresh_token -d "refresh_token=$REFRESH_TOKEN"
expect 200 "refresh"
jq -e '.access_token and .id_token' <<<"$BODY" >/dev/null || fail "refresh response: $BODY"
NEW_ACCESS=$(jq -r .access_token <<<"$BODY")

step "revocation"
STATUS=$(curl -sS -o "$WORK/b" -w '%{http_code}' -u "$CLIENT:$SECRET" \
  -d "token=$NEW_ACCESS" -d token_type_hint=access_token "$ISSUER/token/revocation")
BODY=$(cat "$WORK/b"); expect 200 revocation
STATUS=$(curl -sS -o "$WORK/b" -w '%{http_code}' -H "Authorization: Bearer $NEW_ACCESS" "$ISSUER/me")
BODY=$(cat "$WORK/b"); expect 401 "userinfo with revoked token"

step "second sign-in in the same session skips login and consent"
http "$WORK/jar" GET "$(authorize_url "$CLIENT" s-2 n-2)"
expect 303 "authorize with session"
[[ $LOCATION == "$REDIRECT?"*code=* ]] || fail "expected direct redirect with code, got $LOCATION"

step "client_secret_post client + email login"
sign_in "$WORK/jar-post" gatehouse-post bob.smith@corp.test s-3 n-3
token_request -d grant_type=authorization_code -d "code=$(query_param "$CALLBACK" code)" \
  --data-urlencode "redirect_uri=$REDIRECT" -d "code_verifier=$VERIFIER" \
  -d client_id=gatehouse-post -d "client_secret=$SECRET"
expect 200 "token (client_secret_post)"
CLAIMS=$(jwt_payload "$(jq -r .id_token <<<"$BODY")"); jq -c . <<<"$CLAIMS"
jq -e '.sub == "bob.smith" and .email == "bob.smith@corp.test" and .name == "Bob Smith"' <<<"$CLAIMS" >/dev/null \
  || fail "email-login claims"

step "public client (none)"
sign_in "$WORK/jar-public" gatehouse-public carol s-4 n-4
token_request -d grant_type=authorization_code -d "code=$(query_param "$CALLBACK" code)" \
  --data-urlencode "redirect_uri=$REDIRECT" -d "code_verifier=$VERIFIER" -d client_id=gatehouse-public
expect 200 "token (public)"
jq -e '.id_token' <<<"$BODY" >/dev/null || fail "public token response"
PUBLIC_ACCESS=$(jq -r .access_token <<<"$BODY")

step "code replay is rejected and revokes the tokens issued from that code"
token_request -d grant_type=authorization_code -d "code=$(query_param "$CALLBACK" code)" \
  --data-urlencode "redirect_uri=$REDIRECT" -d "code_verifier=$VERIFIER" -d client_id=gatehouse-public
expect 400 "code replay"
jq -r .error <<<"$BODY"
STATUS=$(curl -sS -o "$WORK/b" -w '%{http_code}' -H "Authorization: Bearer $PUBLIC_ACCESS" "$ISSUER/me")
BODY=$(cat "$WORK/b"); expect 401 "userinfo after code replay"

step "PKCE is required"
http "$WORK/jar-nopkce" GET "$ISSUER/auth?response_type=code&client_id=$CLIENT&redirect_uri=$(jq -rn --arg u "$REDIRECT" '$u|@uri')&scope=openid&state=s-5&nonce=n-5"
expect 303 "authorize without PKCE"
[ "$(query_param "$LOCATION" error)" = invalid_request ] || fail "expected invalid_request without PKCE, got $LOCATION"
query_param "$LOCATION" error_description

step "deny at the login page (Cancel link)"
http "$WORK/jar-deny" GET "$(authorize_url "$CLIENT" s-6 n-6)"
http "$WORK/jar-deny" GET "$LOCATION"
expect 200 "login page"
ABORT=$(grep -o 'href="[^"]*/abort"' <<<"$BODY" | sed 's/href="//;s/"$//')
[ -n "$ABORT" ] || fail "no abort link on login page"
http "$WORK/jar-deny" GET "$ABORT"
expect 303 "abort"
http "$WORK/jar-deny" GET "$LOCATION"
expect 303 "resume after abort"
echo "callback: $LOCATION"
[ "$(query_param "$LOCATION" error)" = access_denied ] || fail "expected error=access_denied"
[ "$(query_param "$LOCATION" state)" = s-6 ] || fail "state not echoed on error"
[ "$(query_param "$LOCATION" iss)" = "$ISSUER" ] || fail "iss missing on error"

step "deny at the consent page (Cancel link, after login)"
http "$WORK/jar-deny2" GET "$(authorize_url "$CLIENT" s-7 n-7)"
http "$WORK/jar-deny2" GET "$LOCATION"
http "$WORK/jar-deny2" POST "$(form_action)" -d prompt=login -d login=dave -d password=x
http "$WORK/jar-deny2" GET "$LOCATION"
http "$WORK/jar-deny2" GET "$LOCATION"
grep -q 'value="consent"' <<<"$BODY" || fail "expected consent page"
ABORT=$(grep -o 'href="[^"]*/abort"' <<<"$BODY" | sed 's/href="//;s/"$//')
http "$WORK/jar-deny2" GET "$ABORT"
http "$WORK/jar-deny2" GET "$LOCATION"
expect 303 "resume after consent abort"
echo "callback: $LOCATION"
[ "$(query_param "$LOCATION" error)" = access_denied ] || fail "expected error=access_denied"

step "RP-initiated logout"
http "$WORK/jar" GET "$ISSUER/session/end?id_token_hint=$ID_TOKEN&post_logout_redirect_uri=$(jq -rn '"http://gatehouse.test/"|@uri')&state=bye"
expect 200 "end_session page"
XSRF=$(grep -o 'name="xsrf" value="[^"]*"' <<<"$BODY" | sed 's/.*value="//;s/"$//')
http "$WORK/jar" POST "$(form_action)" -d "xsrf=$XSRF" -d logout=yes
expect 303 "end_session confirm"
echo "post-logout redirect: $LOCATION"
[ "$LOCATION" = "http://gatehouse.test/?state=bye" ] || fail "unexpected post-logout redirect"
token_request -u "$CLIENT:$SECRET" -d grant_type=refresh_token -d "refresh_token=$REFRESH_TOKEN"
expect 400 "refresh after logout"
echo "refresh after logout: $(jq -r .error <<<"$BODY")"

echo "OK: all checks passed"
