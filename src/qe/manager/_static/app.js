// QE manager page: vanilla JS, polling /api/state, jobs and logs as server-sent events.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
let logSource = null;

async function api(method, path, body) {
  const opts = { method, headers: { "X-QE-Manager": "1" } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const res = await fetch(path, opts);
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.error || `${res.status} ${res.statusText}`);
  return data;
}

function show(text, ok = false) {
  const box = $("#message");
  box.textContent = text;
  box.className = ok ? "ok" : "";
  box.hidden = !text;
}

function duration(seconds) {
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

function stateOf(b) {
  if (!b.runnable) return ["invalid", "no run.py"];
  const run = b.run;
  if (run.status === "running") return b.online ? ["online", "online"] : ["running", "running"];
  if (run.status === "crashed") return ["crashed", run.exit_code === null ? "crashed" : `crashed (exit ${run.exit_code})`];
  if (run.status === "exited") return ["stopped", "exited (0)"];
  return [run.status, run.status];
}

function card(b) {
  const el = document.createElement("div");
  el.className = "block";
  el.dataset.block = b.name;
  el.appendChild($("#python-icon").content.cloneNode(true));
  el.insertAdjacentHTML("beforeend", `
    <div><span class="name"></span> <span class="chip state"></span>
      <div class="meta"></div></div>
    <div class="ping muted"></div>
    <div class="actions">
      <button type="button" data-action="open" class="ghost" title="Open the folder in VS Code">VS Code</button>
      <button type="button" data-action="start">Run</button>
      <button type="button" data-action="stop" class="ghost">Stop</button>
      <button type="button" data-action="ping" class="ghost">Ping</button>
      <button type="button" data-action="log" class="ghost">Logs</button>
    </div>
    <pre class="crash console" hidden></pre>`);
  $(".name", el).textContent = b.name;
  el.addEventListener("click", (ev) => {
    const btn = ev.target.closest("button[data-action]");
    if (btn) act(b.name, btn.dataset.action);
  });
  return el;
}

function update(el, b) {
  const [cls, label] = stateOf(b);
  const chip = $(".state", el);
  chip.className = `chip state ${cls}`;
  chip.textContent = label;
  const run = b.run;
  const parts = [`app ${b.app}`];
  if (b.resource) parts.push(`resource ${b.resource}`);
  if (run.status === "running") parts.push(`pid ${run.pid}`, `up ${duration(b.uptime)}`);
  if (b.jid) parts.push(b.jid);
  if (b.online_elsewhere.length) parts.push(`also online: ${b.online_elsewhere.join(", ")}`);
  $(".meta", el).textContent = parts.join(" · ");
  const active = run.status === "running" || run.status === "starting";
  $('[data-action="start"]', el).disabled = active || !b.runnable;
  $('[data-action="stop"]', el).disabled = !active;
  $('[data-action="ping"]', el).disabled = !b.online && !b.online_elsewhere.length;
  const crash = $(".crash", el);
  crash.hidden = run.status !== "crashed";
  if (!crash.hidden) crash.textContent = `${run.message}\n${b.last_lines.join("\n")}`;
}

async function refresh() {
  let state;
  try {
    state = await api("GET", "/api/state");
  } catch (err) {
    $("#nexus").textContent = "manager unreachable";
    $("#nexus").className = "chip offline";
    return;
  }
  $("#project").textContent = state.project;
  $("#evox-name").textContent = state.evox.name;
  const nx = $("#nexus");
  const reachable = state.nexus.reachable;
  nx.textContent = reachable === false ? `Nexus offline (${state.nexus.url})` : `Nexus ${state.nexus.url}`;
  nx.className = `chip ${reachable === false ? "offline" : "online"}`;
  const list = $("#blocks");
  if (!state.blocks.length) {
    list.innerHTML = `<p class="muted">No blocks (wpy* folders) in this folder. Create one with <code>qe new &lt;app&gt;</code>.</p>`;
    return;
  }
  const seen = new Set();
  for (const b of state.blocks) {
    seen.add(b.name);
    let el = list.querySelector(`[data-block="${CSS.escape(b.name)}"]`);
    if (!el) {
      list.querySelector("p")?.remove();
      el = card(b);
      list.appendChild(el);
    }
    update(el, b);
  }
  for (const el of list.querySelectorAll("[data-block]")) if (!seen.has(el.dataset.block)) el.remove();
}

function follow(job, title) {
  return new Promise((resolve) => {
    const out = $("#activity");
    $("#activity-title").textContent = title;
    out.textContent = "";
    const es = new EventSource(`/api/jobs/${job}`);
    es.addEventListener("line", (ev) => {
      out.textContent += JSON.parse(ev.data) + "\n";
      out.scrollTop = out.scrollHeight;
    });
    es.addEventListener("done", (ev) => {
      es.close();
      const result = JSON.parse(ev.data);
      if (result.error) show(result.error);
      else show(`${title}: done`, true);
      resolve(result);
    });
    es.onerror = () => { es.close(); resolve({ error: "lost the connection to the manager" }); };
  });
}

async function runJob(path, body) {
  const { job, title } = await api("POST", path, body);
  const result = await follow(job, title);
  refresh();
  loadEnv();
  return result;
}

function openLog(name) {
  if (logSource) logSource.close();
  $("#log-panel").hidden = false;
  $("#log-title").textContent = name;
  const out = $("#log");
  out.textContent = "";
  logSource = new EventSource(`/api/blocks/${encodeURIComponent(name)}/log`);
  logSource.addEventListener("line", (ev) => {
    const atEnd = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
    out.textContent += JSON.parse(ev.data) + "\n";
    if (out.textContent.length > 200000) out.textContent = out.textContent.slice(-150000);
    if (atEnd) out.scrollTop = out.scrollHeight;
  });
}

async function act(name, action) {
  show("");
  const path = `/api/blocks/${encodeURIComponent(name)}/${action}`;
  try {
    if (action === "log") return openLog(name);
    if (action === "start") {
      openLog(name);
      return await runJob(path);
    }
    if (action === "stop") return await runJob(path);
    const data = await api("POST", path);
    if (action === "ping") {
      const text = JSON.stringify(data.reply);
      $(`[data-block="${CSS.escape(name)}"] .ping`).textContent = `ping: ${text}`;
      show(`ping ${data.target}: ${text}`, data.reply.code === 0);
    } else if (action === "open") {
      show(`opened ${data.opened} in VS Code`, true);
    }
  } catch (err) {
    show(err.message);
  }
}

async function loadEnv() {
  const dl = $("#evox-status");
  try {
    const s = await api("GET", "/api/env");
    const rows = s.exists
      ? [["state", "ready"], ["python", `${s.version} — ${s.python}`], ["location", s.location],
         ["size", `${(s.size / 1048576).toFixed(1)} MB`], ["packages", String(s.packages.length)]]
      : [["state", "not created yet (made on the first run)"], ["location", s.location]];
    dl.innerHTML = "";
    for (const [k, v] of rows) {
      dl.insertAdjacentHTML("beforeend", "<dt></dt><dd></dd>");
      dl.lastElementChild.previousElementSibling.textContent = k;
      dl.lastElementChild.textContent = v;
    }
    const ul = $("#evox-packages ul");
    ul.innerHTML = "";
    for (const p of s.packages) {
      const li = document.createElement("li");
      li.textContent = `${p.name} ${p.version}`;
      ul.appendChild(li);
    }
  } catch (err) {
    dl.innerHTML = "<dt>state</dt><dd></dd>";
    dl.lastElementChild.textContent = err.message;
  }
}

$("#evox-create").addEventListener("click", () => runJob("/api/env/create").catch((e) => show(e.message)));
$("#evox-refresh").addEventListener("click", loadEnv);
$("#log-close").addEventListener("click", () => {
  if (logSource) logSource.close();
  logSource = null;
  $("#log-panel").hidden = true;
});
$("#install-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const packages = $("#install-input").value.trim();
  if (!packages) return show("name a package to install (pip syntax, e.g. pillow)");
  show("");
  $("#install-button").disabled = true;
  try {
    const result = await runJob("/api/env/install", { packages });
    if (!result.error) $("#install-input").value = "";
  } catch (err) {
    show(err.message);
  } finally {
    $("#install-button").disabled = false;
  }
});

refresh();
loadEnv();
setInterval(refresh, 1000);
