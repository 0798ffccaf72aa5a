// Turnstile demo client: log in, call a protected route, refresh on 403, log out.
// The access token is kept in this module's memory only (never localStorage, never a cookie);
// the refresh token is the API's httpOnly cookie, sent because every call uses credentials: "include".

const DEFAULT_API = "http://localhost:3500";
const $ = (id) => document.getElementById(id);

let accessToken = null;
let refreshing = null;

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
}

function forget() {
  accessToken = null;
  setSession(null);
  showEmployees(null);
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
    return { status: response.status, data };
  } catch {
    logRequest(method, path, "blocked (API unreachable or origin not allowed)", "fail");
    return { status: 0, data: null };
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

function problem(status, data, fallback) {
  if (status === 0) return "Could not reach the API: is it running, and is this page's origin allowed?";
  return (data && data.message) || fallback;
}

async function register() {
  const { status, data } = await send("POST", "/register", { body: credentials() });
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

function init() {
  const fromQuery = new URLSearchParams(location.search).get("api");
  $("api").value = fromQuery || DEFAULT_API;
  $("credentials").addEventListener("submit", login);
  $("register").addEventListener("click", register);
  $("logout").addEventListener("click", logout);
  $("load").addEventListener("click", loadEmployees);
  document.body.dataset.ready = "true";
}

init();
