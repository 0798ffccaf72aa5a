// Turnstile demo client: log in, call a protected route, refresh on 403, log out; an email address,
// its verification and a forgotten-password reset through links that arrive by mail; a second factor
// (an authenticator app's code, a recovery code or a passkey) at sign-in, and passkeys instead of a password.
// The access token is kept in this module's memory only (never localStorage, never a cookie);
// the refresh token is the API's httpOnly cookie, sent because every call uses credentials: "include".
// A mailed link carries its token in the fragment (#reset=... or #verify=...), which no server sees;
// the page takes it out of the address bar at once so it stays out of history and bookmarks.
// The sign-in step's mfaToken, the TOTP secret and the recovery codes are never stored either: the token
// lives in memory until the step ends, the secret and the codes on the page only until the user moves on.

const DEFAULT_API = "http://localhost:3500";
const $ = (id) => document.getElementById(id);

let accessToken = null;
let refreshing = null;
let resetToken = null;
let mfaToken = null; // the sign-in step in progress: what POST /auth answered instead of tokens
let mfaUser = null;
let askFor = null; // what the code asked in the Two-factor panel is for: "off" or "codes"

function apiBase() {
  return ($("api").value.trim() || DEFAULT_API).replace(/\/+$/, "");
}

function logRequest(method, path, outcome, kind = "") {
  const item = document.createElement("li");
  item.className = kind;
  const what = document.createElement("code");
  what.textContent = `${method} ${path}`;
  item.append(what, ` → ${outcome}`);
  $("activity").append(item);
}

function say(text, kind = "") {
  $("message").textContent = text;
  $("message").className = kind;
}

function setSession(user, roles) {
  const badge = $("session");
  badge.textContent = user ? `Signed in as ${user}${roles && roles.length ? ` (${roles.join(", ")})` : ""}` : "Signed out";
  badge.className = `badge ${user ? "signed-in" : "signed-out"}`;
  $("email-panel").hidden = !user;
  $("mfa-panel").hidden = !user;
}

function forget() {
  accessToken = null;
  endSecondFactor();
  setSession(null);
  showEmployees(null);
  showEmail(null);
  resetMfaPanel();
}

async function readBody(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

// One HTTP call. Network failures (server down, or CORS refused) become status 0.
async function send(method, path, { body, auth = false } = {}) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (auth && accessToken) headers["Authorization"] = `Bearer ${accessToken}`;
  try {
    const response = await fetch(apiBase() + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "include",
    });
    const data = await readBody(response);
    const note = data && typeof data === "object" && data.message ? ` ${data.message}` : "";
    logRequest(method, path, `${response.status}${note}`, response.ok ? "ok" : "fail");
    return { status: response.status, data, retryAfter: response.headers.get("Retry-After") };
  } catch {
    logRequest(method, path, "blocked (API unreachable or origin not allowed)", "fail");
    return { status: 0, data: null, retryAfter: null };
  }
}

// Trade the refresh cookie for a new access token. Concurrent callers share one request.
function refresh() {
  refreshing ??= (async () => {
    const { status, data } = await send("GET", "/refresh");
    if (status === 200 && data && data.accessToken) {
      accessToken = data.accessToken;
      return true;
    }
    forget();
    return false;
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

// A protected call: on 403 (access token expired) refresh once and retry once.
async function protectedCall(method, path, options = {}) {
  const first = await send(method, path, { ...options, auth: true });
  if (first.status !== 403) return first;
  if (!(await refresh())) return first;
  return send(method, path, { ...options, auth: true });
}

function credentials() {
  return { user: $("user").value.trim(), pwd: $("pwd").value };
}

// What to tell the user about a failed call; the API exposes Retry-After to allowed origins.
function problem(status, data, fallback, retryAfter = null) {
  if (status === 0) return "Could not reach the API: is it running, and is this page's origin allowed?";
  const text = (data && data.message) || fallback;
  return status === 429 && retryAfter ? `${text} Try again in ${retryAfter} s.` : text;
}

async function register() {
  const body = credentials();
  const email = $("email").value.trim();
  if (email) body.email = email;
  const { status, data } = await send("POST", "/register", { body });
  if (status === 201) say(`Registered ${credentials().user}. Now log in.`, "ok");
  else say(problem(status, data, `Registration failed (${status}).`), "fail");
}

// Tokens in hand, by whichever way of signing in: show the session and load what a signed-in user sees.
async function signedIn(user, data) {
  accessToken = data.accessToken;
  endSecondFactor();
  setSession(user, data.roles);
  $("pwd").value = "";
  say("Logged in. The access token is held in memory only.", "ok");
  await loadEmail();
  await loadEmployees();
}

async function login(event) {
  event.preventDefault();
  const { user, pwd } = credentials();
  const { status, data, retryAfter } = await send("POST", "/auth", { body: { user, pwd } });
  if (status === 200 && data && data.mfaRequired && data.mfaToken) {
    forget();
    askSecondFactor(user, data);
  } else if (status === 200 && data && data.accessToken) {
    await signedIn(user, data);
  } else {
    forget();
    say(problem(status, data, `Login failed (${status}).`, retryAfter), "fail");
  }
}

// The password was right and the account has a second factor: ask for it. No token and no cookie yet.
function askSecondFactor(user, data) {
  const methods = Array.isArray(data.methods) ? data.methods : [];
  const byCode = methods.includes("totp") || methods.includes("recovery_code");
  const byPasskey = methods.includes("webauthn");
  mfaToken = data.mfaToken;
  mfaUser = user;
  $("pwd").value = "";
  $("mfa-code").value = "";
  $("mfa-code-field").hidden = !byCode;
  $("mfa-verify").hidden = !byCode;
  $("mfa-passkey").hidden = !byPasskey;
  $("mfa-step").hidden = false;
  if (byCode) $("mfa-code").focus();
  const how = [byCode && "the code from your authenticator app (or a recovery code)", byPasskey && "a passkey"].filter(Boolean);
  say(`Password accepted. Now confirm it is you with ${how.join(", or ")}.`);
}

function endSecondFactor() {
  mfaToken = null;
  mfaUser = null;
  $("mfa-code").value = "";
  $("mfa-step").hidden = true;
}

// Recovery codes look like xxxx-xxxx-xxxx-xxxx; an app's code is 6 digits (spaces allowed, as apps show them).
function isRecoveryCode(code) {
  return code.includes("-") || code.replace(/\s+/g, "").length > 8;
}

async function finishSecondFactor(body) {
  const { status, data, retryAfter } = await send("POST", "/auth/mfa", { body: { mfaToken, ...body } });
  if (status === 200 && data && data.accessToken) await signedIn(mfaUser, data);
  else say(problem(status, data, `The second factor was refused (${status}).`, retryAfter), "fail");
}

async function submitCode(event) {
  event.preventDefault();
  const code = $("mfa-code").value.trim();
  $("mfa-code").value = "";
  if (!code) return say("Enter the code from your authenticator app, or a recovery code.", "fail");
  await finishSecondFactor(isRecoveryCode(code) ? { recoveryCode: code } : { code: code.replace(/\s+/g, "") });
}

async function secondFactorByPasskey() {
  const { status, data, retryAfter } = await send("POST", "/webauthn/login/options", { body: { mfaToken } });
  if (status !== 200 || !data) return say(problem(status, data, `Could not start the passkey check (${status}).`, retryAfter), "fail");
  const credential = await browserPasskey("get", data);
  if (credential) await finishSecondFactor({ credential });
}

function cancelSecondFactor() {
  endSecondFactor();
  say("Sign-in cancelled.");
}

// --- Passkeys (WebAuthn): the API's JSON options in, the credential's JSON form out. ---

function passkeysSupported() {
  return Boolean(window.PublicKeyCredential && PublicKeyCredential.parseCreationOptionsFromJSON
    && PublicKeyCredential.parseRequestOptionsFromJSON && navigator.credentials);
}

// Ask the browser to create ("create") or use ("get") a passkey; null (and a message said) if it did not.
async function browserPasskey(kind, options) {
  try {
    const credential = kind === "create"
      ? await navigator.credentials.create({ publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options) })
      : await navigator.credentials.get({ publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options) });
    return credential.toJSON();
  } catch (error) {
    const cancelled = error && error.name === "NotAllowedError";
    say(cancelled ? "No passkey was used (the prompt was cancelled or timed out)."
      : `The browser refused the passkey: ${(error && error.message) || error}`, "fail");
    return null;
  }
}

// An access token's claims, read (not checked: the API does that) for what the page shows.
function tokenClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
  } catch {
    return {};
  }
}

// The name for the badge: a passkey sign-in names no user until the API answers.
function tokenUser(token) {
  return tokenClaims(token).username || "";
}

// Whether the sign-in is recent (its auth_time, kept through refresh): after REAUTH_WINDOW (15 minutes by default)
// adding a factor takes the password. A hint for the page only: the API decides.
const REAUTH_WINDOW = 15 * 60;
function signedInRecently() {
  const when = Number(tokenClaims(accessToken).auth_time) || 0;
  return Date.now() / 1000 - when <= REAUTH_WINDOW;
}

// The body of a call that adds a factor: the current password too once the sign-in is not recent.
function proof() {
  const pwd = $("mfa-pwd").value;
  $("mfa-pwd").value = "";
  return pwd && !$("mfa-proof").hidden ? { pwd } : {};
}

async function passkeyLogin() {
  const options = await send("POST", "/webauthn/login/options", { body: {} });
  if (options.status !== 200 || !options.data) {
    return say(problem(options.status, options.data, `Could not start a passkey sign-in (${options.status}).`, options.retryAfter), "fail");
  }
  const credential = await browserPasskey("get", options.data);
  if (!credential) return;
  const { status, data, retryAfter } = await send("POST", "/webauthn/login", { body: { credential } });
  if (status === 200 && data && data.accessToken) await signedIn(tokenUser(data.accessToken) || "(passkey)", data);
  else {
    forget();
    say(problem(status, data, `Passkey sign-in failed (${status}).`, retryAfter), "fail");
  }
}

// --- The Two-factor panel: loaded when opened, so signing in costs no extra call. ---

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function showMfa(info) {
  $("mfa-status").textContent = info.totp
    ? `Authenticator app: on, ${plural(info.recoveryCodesLeft, "recovery code")} left.`
    : "Authenticator app: off.";
  $("mfa-status").className = info.totp ? "ok" : "muted";
  $("totp-setup").hidden = info.totp;
  $("mfa-proof").hidden = signedInRecently();
  $("totp-off").hidden = !info.totp;
  $("codes-new").hidden = !info.totp;
  const list = $("passkeys");
  list.replaceChildren();
  for (const key of info.passkeys || []) {
    const item = document.createElement("li");
    const name = document.createElement("span");
    name.textContent = key.name;
    const when = document.createElement("span");
    when.className = "muted";
    const day = (s) => new Date(s * 1000).toLocaleDateString();
    when.textContent = `added ${day(key.created)}${key.lastUsed ? `, last used ${day(key.lastUsed)}` : ", not used yet"}`;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "remove";
    remove.textContent = "Remove";
    remove.addEventListener("click", () => removePasskey(key.id, key.name));
    item.append(name, " ", when, remove);
    list.append(item);
  }
  if (!list.children.length) {
    const none = document.createElement("li");
    none.className = "muted";
    none.textContent = "No passkeys yet.";
    list.append(none);
  }
}

async function loadMfa() {
  const { status, data } = await protectedCall("GET", "/mfa");
  if (status === 200 && data) showMfa(data);
  else {
    $("mfa-status").textContent = problem(status, data, `Could not load the second factors (${status}).`);
    $("mfa-status").className = "fail";
  }
}

// Closed and emptied: no secret, code or recovery code is left on the page after signing out.
function resetMfaPanel() {
  $("mfa-panel").open = false;
  $("mfa-status").textContent = "";
  $("passkeys").replaceChildren();
  hideEnrolment();
  hideRecoveryCodes();
  $("mfa-ask").hidden = true;
  $("mfa-ask-code").value = "";
  $("passkey-name").value = "";
  $("mfa-pwd").value = "";
}

function hideEnrolment() {
  $("totp-enrol").hidden = true;
  $("totp-qr").removeAttribute("src");
  $("totp-secret").textContent = "";
  $("totp-code").value = "";
}

function showRecoveryCodes(codes) {
  const list = $("recovery-codes");
  list.replaceChildren(...codes.map((code) => {
    const item = document.createElement("li");
    item.textContent = code;
    return item;
  }));
  $("recovery").hidden = false;
}

function hideRecoveryCodes() {
  $("recovery-codes").replaceChildren();
  $("recovery").hidden = true;
}

async function startTotp() {
  $("mfa-ask").hidden = true;
  const { status, data, retryAfter } = await protectedCall("POST", "/mfa/totp", { body: proof() });
  if (status === 200 && data && data.secret) {
    $("totp-qr").src = data.qr;
    $("totp-secret").textContent = data.secret;
    $("totp-enrol").hidden = false;
    $("totp-code").focus();
    say("Scan the QR code with your authenticator app, then enter the code it shows.");
  } else say(problem(status, data, `Could not start the set-up (${status}).`, retryAfter), "fail");
}

async function confirmTotp(event) {
  event.preventDefault();
  const code = $("totp-code").value.replace(/\s+/g, "");
  $("totp-code").value = "";
  const { status, data, retryAfter } = await protectedCall("POST", "/mfa/totp/confirm", { body: { code } });
  if (status === 200 && data && Array.isArray(data.recoveryCodes)) {
    hideEnrolment();
    showRecoveryCodes(data.recoveryCodes);
    await loadMfa();
    say("The authenticator app is on. Save the recovery codes now: they are shown only this once.", "ok");
  } else say(problem(status, data, `Could not turn it on (${status}).`, retryAfter), "fail");
}

function askCode(what) {
  askFor = what;
  hideEnrolment();
  $("mfa-ask-send").textContent = what === "off" ? "Turn off" : "Make new codes";
  $("mfa-ask-code").value = "";
  $("mfa-ask").hidden = false;
  $("mfa-ask-code").focus();
  say(what === "off" ? "To turn the authenticator app off, enter a code from it or a recovery code."
    : "To make new recovery codes (the old ones stop working), enter a code from the app or a recovery code.");
}

async function submitAsk(event) {
  event.preventDefault();
  const entered = $("mfa-ask-code").value.trim();
  const code = isRecoveryCode(entered) ? entered : entered.replace(/\s+/g, "");
  $("mfa-ask-code").value = "";
  if (askFor === "off") {
    const { status, data, retryAfter } = await protectedCall("DELETE", "/mfa/totp", { body: { code } });
    if (status === 204) {
      $("mfa-ask").hidden = true;
      hideRecoveryCodes();
      await loadMfa();
      say("The authenticator app is off, and the recovery codes no longer work.", "ok");
    } else say(problem(status, data, `Could not turn it off (${status}).`, retryAfter), "fail");
  } else {
    const { status, data, retryAfter } = await protectedCall("POST", "/mfa/recovery-codes", { body: { code } });
    if (status === 200 && data && Array.isArray(data.recoveryCodes)) {
      $("mfa-ask").hidden = true;
      showRecoveryCodes(data.recoveryCodes);
      await loadMfa();
      say("New recovery codes: the old ones no longer work. Save these now: they are shown only this once.", "ok");
    } else say(problem(status, data, `Could not make new codes (${status}).`, retryAfter), "fail");
  }
}

async function addPasskey(event) {
  event.preventDefault();
  const options = await protectedCall("POST", "/webauthn/register/options", { body: proof() });
  if (options.status !== 200 || !options.data) {
    return say(problem(options.status, options.data, `Could not start adding a passkey (${options.status}).`, options.retryAfter), "fail");
  }
  const credential = await browserPasskey("create", options.data);
  if (!credential) return;
  const body = { credential };
  const name = $("passkey-name").value.trim();
  if (name) body.name = name;
  const { status, data } = await protectedCall("POST", "/webauthn/register", { body });
  if (status === 201 && data) {
    $("passkey-name").value = "";
    await loadMfa();
    say(`Passkey "${data.name}" added: you can sign in with it instead of a password.`, "ok");
  } else say(problem(status, data, `Could not add the passkey (${status}).`), "fail");
}

async function removePasskey(id, name) {
  const { status, data } = await protectedCall("DELETE", `/webauthn/credentials/${encodeURIComponent(id)}`);
  if (status === 204) {
    await loadMfa();
    say(`Passkey "${name}" removed.`, "ok");
  } else say(problem(status, data, `Could not remove the passkey (${status}).`), "fail");
}

async function logout() {
  await send("GET", "/logout");
  forget();
  say("Logged out: the refresh cookie is cleared and the access token forgotten.", "ok");
}

function showEmployees(rows) {
  const body = $("employees").querySelector("tbody");
  body.replaceChildren();
  for (const row of rows || []) {
    const tr = document.createElement("tr");
    for (const value of [row.id, row.firstname, row.lastname]) {
      const td = document.createElement("td");
      td.textContent = value ?? "";
      tr.append(td);
    }
    body.append(tr);
  }
  $("empty").hidden = Boolean(rows && rows.length);
}

async function loadEmployees() {
  const { status, data } = await protectedCall("GET", "/employees");
  if (status === 200 && Array.isArray(data)) {
    showEmployees(data);
    say(`Loaded ${data.length} employees.`, "ok");
  } else {
    showEmployees(null);
    if (status === 401) forget();
    say(status === 401 || status === 403 ? "Please log in." : problem(status, data, `Request failed (${status}).`), "fail");
  }
}

function showEmail(info) {
  const status = $("email-status");
  status.textContent = !info ? "" : info.email
    ? `${info.email} (${info.email_verified ? "verified" : "not verified"})`
    : "No address on this account yet.";
  status.className = info && info.email_verified ? "ok" : "muted";
  $("email-new").value = (info && info.email) || "";
  $("email-verify").disabled = !info || !info.email || info.email_verified;
}

async function loadEmail() {
  const { status, data } = await protectedCall("GET", "/email");
  if (status === 200 && data) showEmail(data);
  else {
    showEmail(null);
    $("email-status").textContent = problem(status, data, `Could not load the address (${status}).`);
    $("email-status").className = "fail";
  }
}

async function saveEmail(event) {
  event.preventDefault();
  // The address is where reset links go, so changing it takes the password, as changing the password does.
  const body = { email: $("email-new").value.trim(), pwd: $("email-pwd").value };
  $("email-pwd").value = "";
  const { status, data, retryAfter } = await protectedCall("PUT", "/email", { body });
  if (status === 200 && data) {
    showEmail(data);
    say(`Address saved: ${data.email}. Send a verification link to confirm it.`, "ok");
  } else say(problem(status, data, `Could not save the address (${status}).`, retryAfter), "fail");
}

async function requestVerification() {
  const { status, data, retryAfter } = await protectedCall("POST", "/email/verify-request", { body: {} });
  if (status === 202) say((data && data.message) || "Verification link sent.", "ok");
  else say(problem(status, data, `Could not send the link (${status}).`, retryAfter), "fail");
}

function openForgot() {
  $("forgot").hidden = !$("forgot").hidden;
  if (!$("forgot-who").value) $("forgot-who").value = $("user").value.trim();
  if (!$("forgot").hidden) $("forgot-who").focus();
}

// Usernames cannot contain "@", so anything with one is an address.
async function forgot(event) {
  event.preventDefault();
  const who = $("forgot-who").value.trim();
  const body = who.includes("@") ? { email: who } : { user: who };
  const { status, data, retryAfter } = await send("POST", "/password/forgot", { body });
  if (status === 202) {
    $("forgot").hidden = true;
    say((data && data.message) || "If the account exists, a reset link is on its way.", "ok");
  } else say(problem(status, data, `Could not ask for a reset (${status}).`, retryAfter), "fail");
}

async function resetPassword(event) {
  event.preventDefault();
  const { status, data } = await send("POST", "/password/reset", {
    body: { token: resetToken, newPwd: $("new-pwd").value },
  });
  $("new-pwd").value = "";
  if (status === 204) {
    resetToken = null;
    $("reset").hidden = true;
    forget();
    say("Password changed, and every session ended. Log in with the new password.", "ok");
  } else say(problem(status, data, `Could not set the password (${status}).`), "fail");
}

async function verifyEmail(token) {
  const { status, data } = await send("POST", "/email/verify", { body: { token } });
  if (status === 204) {
    say("Email address verified.", "ok");
    if (accessToken) await loadEmail();
  } else say(problem(status, data, `Could not verify the address (${status}).`), "fail");
}

// A link from a mail: take the token out of the address bar first, then act on it.
function followLink() {
  const match = /^#(reset|verify)=(.+)$/.exec(location.hash);
  if (!match) return;
  history.replaceState(history.state, "", location.pathname + location.search);
  let token;
  try {
    token = decodeURIComponent(match[2]);
  } catch {
    say("This link is damaged: copy the whole link from the mail.", "fail");
    return;
  }
  if (match[1] === "verify") {
    verifyEmail(token);
  } else {
    resetToken = token;
    $("reset").hidden = false;
    $("new-pwd").focus();
    say("Choose a new password for your account.");
  }
}

function init() {
  const fromQuery = new URLSearchParams(location.search).get("api");
  $("api").value = fromQuery || DEFAULT_API;
  $("credentials").addEventListener("submit", login);
  $("register").addEventListener("click", register);
  $("logout").addEventListener("click", logout);
  $("load").addEventListener("click", loadEmployees);
  $("forgot-open").addEventListener("click", openForgot);
  $("forgot").addEventListener("submit", forgot);
  $("reset").addEventListener("submit", resetPassword);
  $("email-panel").addEventListener("submit", saveEmail);
  $("email-verify").addEventListener("click", requestVerification);
  $("passkey-login").addEventListener("click", passkeyLogin);
  $("mfa-step").addEventListener("submit", submitCode);
  $("mfa-passkey").addEventListener("click", secondFactorByPasskey);
  $("mfa-cancel").addEventListener("click", cancelSecondFactor);
  $("mfa-panel").addEventListener("toggle", () => {
    if ($("mfa-panel").open && accessToken) loadMfa();
  });
  $("totp-setup").addEventListener("click", startTotp);
  $("totp-enrol").addEventListener("submit", confirmTotp);
  $("totp-off").addEventListener("click", () => askCode("off"));
  $("codes-new").addEventListener("click", () => askCode("codes"));
  $("mfa-ask").addEventListener("submit", submitAsk);
  $("recovery-done").addEventListener("click", hideRecoveryCodes);
  $("passkey-form").addEventListener("submit", addPasskey);
  if (!passkeysSupported()) {
    for (const id of ["passkey-login", "mfa-passkey", "passkey-add"]) {
      $(id).disabled = true;
      $(id).title = "This browser cannot use passkeys.";
    }
  }
  window.addEventListener("hashchange", followLink);
  followLink();
  document.body.dataset.ready = "true";
}

init();
