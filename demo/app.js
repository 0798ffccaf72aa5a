// Turnstile demo client: log in, call a protected route, refresh on 403, log out; an email address,
// its verification and a forgotten-password reset through links that arrive by mail.
// The access token is kept in this module's memory only (never localStorage, never a cookie);
// the refresh token is the API's httpOnly cookie, sent because every call uses credentials: "include".
// A mailed link carries its token in the fragment (#reset=... or #verify=...), which no server sees;
// the page takes it out of the address bar at once so it stays out of history and bookmarks.

const DEFAULT_API = "http://localhost:3500";
const $ = (id) => document.getElementById(id);

let accessToken = null;
let refreshing = null;
let resetToken = null;

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
}

function forget() {
  accessToken = null;
  setSession(null);
  showEmployees(null);
  showEmail(null);
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

async function login(event) {
  event.preventDefault();
  const { user, pwd } = credentials();
  const { status, data } = await send("POST", "/auth", { body: { user, pwd } });
  if (status === 200 && data && data.accessToken) {
    accessToken = data.accessToken;
    setSession(user, data.roles);
    $("pwd").value = "";
    say("Logged in. The access token is held in memory only.", "ok");
    await loadEmail();
    await loadEmployees();
  } else {
    forget();
    say(problem(status, data, `Login failed (${status}).`), "fail");
  }
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
  window.addEventListener("hashchange", followLink);
  followLink();
  document.body.dataset.ready = "true";
}

init();
