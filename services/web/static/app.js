// app.js: the pkgfarm status page. Everything comes from the Connect API of
// the dispatcher that serves the page (depgraph's calls forwarded by it):
// ListBuilds and GetBuildStatus polled, each build's jobs listed once and
// then kept current from WatchJobs, ListAgents polled, logs by ReadLog
// (followed while the job runs), "why" by ExplainJob, reports by GetReport.
// Reading needs no token (unless the farm is run with --read-auth token);
// cancelling a build and draining an agent need the operator token, which
// the page asks for and keeps in this tab's sessionStorage.

import { base64Bytes, getToken, RpcError, setToken, stream, unary } from "./rpc.js";
import { doneCount, el, formatSeconds, millis, seconds, stateName, TERMINAL } from "./format.js";
import { timeline } from "./timeline.js";
import { graphSvg } from "./graph.js";

const POLL_MS = 2000;
const JOB_ROWS = 400;

const page = {
  builds: [],
  /** The selected build's id, its GetBuildStatus answer, and its jobs by PKGNAME. */
  selected: undefined,
  status: undefined,
  jobs: new Map(),
  jobsLoaded: false,
  agents: [],
  watch: undefined,
  log: undefined,
  jobFilter: "",
  problem: "",
};

const $ = (id) => document.getElementById(id);
/** The nodes that are there (replaceChildren would print "undefined" for the others). */
const present = (...nodes) => nodes.filter((n) => n !== undefined);
/** Only a job that ran on a host has a log. */
const hasLog = (j) => Boolean(j.agentId || j.startTime);
const jobState = (j) => stateName(j.state, "JOB_STATE_");
const buildState = (b) => stateName(b.state, "BUILD_STATE_");

// ---- talking to the farm ----------------------------------------------

function showProblem(where, e) {
  if (e instanceof DOMException && e.name === "AbortError") return;
  const text = e instanceof RpcError ? e.message : String(e);
  page.problem = `${where}: ${text}`;
  if (e instanceof RpcError && e.code === "unauthenticated") page.problem += " — this farm needs a token to read; set one with “Token”.";
  render();
}

async function refreshBuilds() {
  try {
    const { builds = [] } = await unary("DepGraphService", "ListBuilds", {});
    page.builds = builds;
    page.problem = "";
    const fromHash = new URLSearchParams(location.hash.slice(1)).get("build");
    const wanted = fromHash ?? page.selected ?? builds[0]?.id;
    if (wanted !== undefined && wanted !== page.selected && builds.some((b) => b.id === wanted)) selectBuild(wanted);
  } catch (e) {
    showProblem("ListBuilds", e);
  }
  render();
}

async function refreshAgents() {
  try {
    const { agents = [] } = await unary("DispatcherService", "ListAgents", {});
    page.agents = agents;
  } catch (e) {
    showProblem("ListAgents", e);
  }
  render();
}

async function refreshStatus() {
  const id = page.selected;
  if (id === undefined) return;
  try {
    const status = await unary("DepGraphService", "GetBuildStatus", { buildId: id });
    if (page.selected !== id) return;
    page.status = status;
    if (status.build) checkJobs(id, status.build);
    const i = page.builds.findIndex((b) => b.id === id);
    if (i >= 0 && status.build) page.builds[i] = status.build;
  } catch (e) {
    showProblem("GetBuildStatus", e);
  }
  render();
}

async function loadJobs(id) {
  const jobs = new Map();
  let pageToken = "";
  do {
    const answer = await unary("DepGraphService", "ListJobs", { buildId: id, pageSize: 1000, pageToken });
    for (const job of answer.jobs ?? []) jobs.set(job.pkgname, job);
    pageToken = answer.nextPageToken ?? "";
  } while (pageToken !== "" && page.selected === id);
  if (page.selected !== id) return;
  // Keep what transitions told since (end times the listing lacks).
  for (const [name, job] of jobs) {
    const seen = page.jobs.get(name);
    if (seen?.endTime !== undefined && TERMINAL.has(job.state)) job.endTime = seen.endTime;
  }
  page.jobs = jobs;
  page.jobsLoaded = true;
  render();
}

/**
 * The job list and the transitions can miss each other: connect answers a
 * stream's headers only with its first message, so the page cannot wait for
 * WatchJobs to be subscribed before it lists the jobs. When the list's
 * counts disagree with depgraph's on two polls running, the list is read again.
 */
let disagreements = 0;
function checkJobs(id, build) {
  if (!page.jobsLoaded) return;
  const counts = {};
  for (const job of page.jobs.values()) counts[job.state] = (counts[job.state] ?? 0) + 1;
  const theirs = build.jobCounts ?? {};
  const same = page.jobs.size === (build.totalJobs ?? 0) && Object.keys({ ...counts, ...theirs }).every((s) => (counts[s] ?? 0) === (theirs[s] ?? 0));
  disagreements = same ? 0 : disagreements + 1;
  if (disagreements >= 2) {
    disagreements = 0;
    loadJobs(id).catch((e) => showProblem("ListJobs", e));
  }
}

/** Follows the build's transitions, and lists its jobs once the WatchJobs request is out. */
async function watchBuild(id, signal) {
  for (let attempt = 0; !signal.aborted; attempt++) {
    try {
      const messages = stream("DepGraphService", "WatchJobs", { buildId: id }, signal);
      // The first next() sends the request; the listing goes after it.
      const first = messages.next();
      const listed = loadJobs(id).catch((e) => showProblem("ListJobs", e));
      for (let r = await first; !r.done; r = await messages.next()) {
        const m = r.value;
        attempt = 0;
        if (m.buildEvent) {
          await listed;
          await refreshStatus();
          if (m.buildEvent.kind === "BUILD_EVENT_KIND_ENDED") await Promise.all([loadJobs(id), refreshAgents()]);
          continue;
        }
        applyTransition(m);
      }
    } catch (e) {
      if (signal.aborted) return;
      showProblem("WatchJobs", e);
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(10_000, 1000 * 2 ** attempt)));
  }
}

function applyTransition(m) {
  const job = page.jobs.get(m.pkgname) ?? { pkgname: m.pkgname, location: m.location, buildId: m.buildId };
  job.state = m.toState;
  if (m.reason) job.reason = m.reason;
  if (m.agentId) job.agentId = m.agentId;
  if (m.host) job.host = m.host;
  const t = millis(m.time) ?? Date.now();
  if (m.toState === "JOB_STATE_LEASED") {
    job.startTime = m.time;
    delete job.endTime;
  }
  if (TERMINAL.has(m.toState)) job.endTime = t;
  page.jobs.set(m.pkgname, job);
  // A transition does not say which failure blocks a job (Job.blocked_by),
  // which the failures' order needs: read the list again, once for a burst.
  if (m.toState === "JOB_STATE_INDIRECT_FAILED") scheduleReload(m.buildId);
  scheduleRender();
}

let reloadTimer;
function scheduleReload(id) {
  if (reloadTimer !== undefined) return;
  reloadTimer = setTimeout(() => {
    reloadTimer = undefined;
    if (page.selected === id) loadJobs(id).catch((e) => showProblem("ListJobs", e));
  }, 1000);
}

function selectBuild(id) {
  page.watch?.abort();
  page.selected = id;
  page.status = undefined;
  page.jobs = new Map();
  page.jobsLoaded = false;
  $("why").replaceChildren();
  $("report").replaceChildren();
  const watch = new AbortController();
  page.watch = watch;
  history.replaceState(null, "", `#build=${encodeURIComponent(id)}`);
  void watchBuild(id, watch.signal);
  void refreshStatus();
}

async function cancelBuild() {
  const id = page.selected;
  if (id === undefined) return;
  try {
    await unary("DepGraphService", "CancelBuild", { buildId: id });
    say("build-message", `build ${id} cancelled`);
    await refreshStatus();
  } catch (e) {
    refused("build-message", "cancelling the build", e);
  }
}

async function drainAgent(agentId) {
  try {
    await unary("DispatcherService", "DrainAgent", { agentId });
    say("agents-message", `agent ${agentId} drains: it finishes what it runs and takes no more`);
    await refreshAgents();
  } catch (e) {
    refused("agents-message", `draining ${agentId}`, e);
  }
}

function say(id, text, isError = false) {
  const node = $(id);
  node.textContent = text;
  node.classList.toggle("error", isError);
}

/** A change the server refused: an unauthenticated one asks for the operator token. */
function refused(where, what, e) {
  const needsToken = e instanceof RpcError && (e.code === "unauthenticated" || e.code === "permission_denied");
  say(where, `refused: ${what} needs the operator token (${e instanceof RpcError ? e.message : String(e)})`, true);
  if (needsToken) openTokenDialog();
}

async function explain(pkgname) {
  const box = $("why");
  box.replaceChildren(el("p", {}, `asking why ${pkgname} …`));
  try {
    const answer = await unary("DepGraphService", "ExplainJob", { buildId: page.selected, pkgname });
    const wait = answer.wait ?? {};
    box.replaceChildren(...present(
      el("h3", {}, `Why: ${pkgname}`),
      el("p", { id: "why-text" }, answer.summary ?? ""),
      el("p", {}, `state ${jobState(answer.job ?? {})}; wait: ${stateName(wait.kind, "WAIT_KIND_")}${wait.detail ? ` — ${wait.detail}` : ""}`),
      (wait.dependencies ?? []).length > 0 ? el("p", {}, `waiting for: ${wait.dependencies.join(", ")}`) : undefined,
      (answer.chain ?? []).length > 0
        ? el("ol", { class: "chain" }, answer.chain.map((j) => el("li", {}, `${j.pkgname} — ${jobState(j)}${j.host ? ` on ${j.host}` : ""}${j.reason ? `: ${j.reason}` : ""}`)))
        : undefined,
    ));
  } catch (e) {
    box.replaceChildren(el("p", { class: "error" }, `ExplainJob: ${e.message}`));
  }
}

/** Shows a job's log; while the job runs, ReadLog follows it as it grows. */
async function openLog(pkgname, phase = "") {
  page.log?.abort();
  const controller = new AbortController();
  page.log = controller;
  const job = page.jobs.get(pkgname);
  const follow = job === undefined || !TERMINAL.has(job.state);
  const text = $("log-text");
  text.textContent = "";
  $("log-title").textContent = `Log: ${pkgname}${phase ? ` (${phase})` : ""}${follow ? " — following" : ""}`;
  $("log").hidden = false;
  const decoder = new TextDecoder();
  try {
    for await (const chunk of stream("DispatcherService", "ReadLog", { buildId: page.selected, pkgname, follow, phase }, controller.signal)) {
      const atBottom = text.scrollTop + text.clientHeight >= text.scrollHeight - 4;
      text.append(decoder.decode(base64Bytes(chunk.data), { stream: true }));
      if (atBottom) text.scrollTop = text.scrollHeight;
    }
    $("log-title").textContent = `Log: ${pkgname}${phase ? ` (${phase})` : ""} — complete`;
  } catch (e) {
    if (!controller.signal.aborted) text.append(`\n[ReadLog: ${e.message}]\n`);
  }
}

function closeLog() {
  page.log?.abort();
  $("log").hidden = true;
}

async function showReport(format) {
  const box = $("report");
  box.replaceChildren(el("p", {}, "loading …"));
  const parts = [];
  try {
    for await (const piece of stream("DispatcherService", "GetReport", { buildId: page.selected, format })) parts.push(base64Bytes(piece.data));
  } catch (e) {
    box.replaceChildren(el("p", { class: "error" }, `GetReport: ${e.message}`));
    return;
  }
  const text = new TextDecoder().decode(await new Blob(parts).arrayBuffer());
  if (format === "REPORT_FORMAT_HTML") {
    // No scripts run in the report's frame (sandbox without allow-scripts).
    box.replaceChildren(el("iframe", { sandbox: "", srcdoc: text, title: "HTML report", class: "report-frame" }));
  } else {
    box.replaceChildren(el("pre", { id: "report-text" }, text));
  }
}

// ---- the token --------------------------------------------------------

function openTokenDialog() {
  const dialog = $("token-dialog");
  $("token-input").value = "";
  if (!dialog.open) dialog.showModal();
  $("token-input").focus();
}

function saveToken() {
  setToken($("token-input").value.trim());
  $("token-dialog").close();
  render();
  void refreshBuilds();
}

// ---- drawing ----------------------------------------------------------

let renderScheduled = false;
function scheduleRender() {
  if (renderScheduled) return;
  renderScheduled = true;
  setTimeout(() => {
    renderScheduled = false;
    render();
  }, 200);
}

function progressBar(done, total) {
  const share = total === 0 ? 0 : done / total;
  return el("span", { class: "bar", title: `${done} of ${total} done` }, el("span", { class: "fill", style: `width:${(share * 100).toFixed(1)}%` }));
}

function renderBuilds() {
  const rows = page.builds.map((b) => {
    const done = doneCount(b);
    const status = b.id === page.selected ? page.status : undefined;
    const eta = status?.estimate ? formatSeconds(seconds(status.estimate.remaining)) : "";
    return el("tr", { class: b.id === page.selected ? "selected" : undefined, "data-build": b.id, onclick: () => selectBuild(b.id) },
      el("td", {}, el("a", { href: `#build=${encodeURIComponent(b.id)}` }, b.id)),
      el("td", {}, b.platform ?? ""),
      el("td", { class: `state-${buildState(b)}` }, buildState(b)),
      el("td", {}, progressBar(done, b.totalJobs ?? 0), ` ${done}/${b.totalJobs ?? 0}`),
      el("td", {}, eta),
      el("td", {}, b.createTime ? new Date(b.createTime).toLocaleString() : ""));
  });
  $("builds-body").replaceChildren(...(rows.length > 0 ? rows : [el("tr", {}, el("td", { colspan: 6 }, "no builds yet"))]));
}

function renderSummary() {
  const status = page.status;
  const build = status?.build ?? page.builds.find((b) => b.id === page.selected);
  $("build").hidden = build === undefined;
  if (build === undefined) return;
  const done = doneCount(build);
  const counts = Object.entries(build.jobCounts ?? {}).filter(([, n]) => n > 0).map(([s, n]) => `${n} ${stateName(s, "JOB_STATE_")}`);
  $("build-title").textContent = `Build ${build.id} on ${build.platform ?? "?"} — ${buildState(build)}`;
  const estimate = status?.estimate;
  $("build-summary").replaceChildren(...present(
    el("p", {}, progressBar(done, build.totalJobs ?? 0), " ", el("strong", { id: "build-progress" }, `${done}/${build.totalJobs ?? 0}`), " jobs done",
      status?.elapsed ? ` in ${formatSeconds(seconds(status.elapsed))}` : ""),
    el("p", { id: "build-counts" }, counts.join(", ")),
    estimate ? el("p", { id: "build-eta" }, `ETA ${formatSeconds(seconds(estimate.remaining))} (about ${new Date(estimate.finishTime).toLocaleTimeString()}); `,
      `work left ${formatSeconds(seconds(estimate.workLeft))}, critical path ${formatSeconds(seconds(estimate.criticalPathLeft))}, ${estimate.parallelism ?? 1} at once`) : undefined,
    build.problem ? el("p", { class: "error" }, build.problem) : undefined,
  ));
  $("cancel-build").disabled = build.state !== "BUILD_STATE_RUNNING" && build.state !== "BUILD_STATE_SCANNING";
  $("report-buttons").hidden = build.state === "BUILD_STATE_RUNNING" || build.state === "BUILD_STATE_SCANNING";
  const jobs = [...page.jobs.values()];
  $("graph").replaceChildren(page.jobsLoaded ? graphSvg(timeline(build, jobs, Date.now())) : el("p", {}, "loading jobs …"));
}

function renderRunning() {
  const now = Date.now();
  const running = page.status?.running ?? [];
  const byAgent = new Map();
  for (const job of running) {
    const key = job.agentId || "(unknown agent)";
    if (!byAgent.has(key)) byAgent.set(key, []);
    byAgent.get(key).push(job);
  }
  const blocks = [...byAgent].sort(([a], [b]) => a.localeCompare(b)).map(([agent, jobs]) => el("div", { class: "agent-running", "data-agent": agent },
    el("h4", {}, `${agent}${jobs[0].host ? ` (${jobs[0].host})` : ""}`),
    el("ul", {}, jobs.map((j) => {
      const started = millis(j.startTime);
      const expected = seconds(j.expectedDuration);
      return el("li", { "data-job": j.pkgname },
        `${j.pkgname} — ${started === undefined ? "?" : formatSeconds((now - started) / 1000)}`, expected > 0 ? ` of ~${formatSeconds(expected)}` : "", " ",
        el("button", { class: "link", onclick: () => openLog(j.pkgname) }, "log"), " ",
        el("button", { class: "link", onclick: () => explain(j.pkgname) }, "why"));
    }))));
  $("running").replaceChildren(...(blocks.length > 0 ? blocks : [el("p", {}, "nothing running")]));
}

function renderFailures() {
  const jobs = [...page.jobs.values()];
  const blocks = new Map();
  for (const j of jobs) if (j.blockedBy) blocks.set(j.blockedBy, [...(blocks.get(j.blockedBy) ?? []), j.pkgname]);
  const failed = jobs.filter((j) => j.state === "JOB_STATE_FAILED" || j.state === "JOB_STATE_PREFAILED" || j.state === "JOB_STATE_CYCLE");
  failed.sort((a, b) => (blocks.get(b.pkgname)?.length ?? 0) - (blocks.get(a.pkgname)?.length ?? 0) || a.pkgname.localeCompare(b.pkgname));
  const rows = failed.map((j) => {
    const blocked = blocks.get(j.pkgname) ?? [];
    return el("tr", { "data-job": j.pkgname },
      el("td", {}, j.pkgname),
      el("td", {}, jobState(j)),
      el("td", {}, j.failedPhase ?? ""),
      el("td", {}, j.reason ?? ""),
      el("td", { title: blocked.join(", ") }, String(blocked.length)),
      el("td", {}, j.state === "JOB_STATE_FAILED"
        ? [el("button", { class: "link", onclick: () => openLog(j.pkgname) }, "log"),
          j.failedPhase ? [" ", el("button", { class: "link", onclick: () => openLog(j.pkgname, j.failedPhase) }, `${j.failedPhase} log`)] : []]
        : ""));
  });
  $("failures-body").replaceChildren(...(rows.length > 0 ? rows : [el("tr", {}, el("td", { colspan: 6 }, page.jobsLoaded ? "no failures" : "…"))]));
}

function renderJobs() {
  // A lease's transition names its holder, the dispatcher, which picks the
  // agent afterwards; GetBuildStatus knows the agent and host of what runs.
  const runningOn = new Map((page.status?.running ?? []).map((j) => [j.pkgname, j.host || j.agentId]));
  const filter = page.jobFilter;
  const jobs = [...page.jobs.values()].filter((j) => filter === "" || j.state === filter).sort((a, b) => a.pkgname.localeCompare(b.pkgname));
  const rows = jobs.slice(0, JOB_ROWS).map((j) => el("tr", { "data-job": j.pkgname },
    el("td", {}, j.pkgname),
    el("td", {}, j.location ?? ""),
    el("td", { class: `job-${jobState(j)}` }, jobState(j)),
    el("td", {}, (j.state === "JOB_STATE_LEASED" ? runningOn.get(j.pkgname) : undefined) ?? (j.host || j.agentId || "")),
    el("td", {}, j.duration ? formatSeconds(seconds(j.duration)) : ""),
    el("td", {}, el("button", { class: "link", onclick: () => explain(j.pkgname) }, "why"),
      hasLog(j) ? [" ", el("button", { class: "link", onclick: () => openLog(j.pkgname) }, "log")] : "")));
  if (jobs.length > JOB_ROWS) rows.push(el("tr", {}, el("td", { colspan: 6 }, `… and ${jobs.length - JOB_ROWS} more; pick a state`)));
  $("jobs-body").replaceChildren(...rows);
}

/** What an agent runs, each with how long since it was sent (Agent.jobs; Agent.running from older dispatchers). */
function agentJobs(agent, now) {
  const jobs = agent.jobs ?? (agent.running ?? []).map((job) => ({ job }));
  return jobs.map((j) => {
    const sent = millis(j.assignTime);
    const scan = j.kind === "scan" ? "scan " : "";
    return `${scan}${j.job?.pkgname ?? "?"}${sent === undefined ? "" : ` ${formatSeconds((now - sent) / 1000)}`}${sent !== undefined && !j.accepted ? " (not yet accepted)" : ""}`;
  }).join(", ");
}

function renderAgents() {
  const now = Date.now();
  const rows = page.agents.map((a) => {
    const hello = a.hello ?? {};
    const running = a.running ?? [];
    const seen = millis(a.lastSeen);
    return el("tr", { "data-agent": hello.agentId },
      el("td", {}, hello.agentId ?? ""),
      el("td", {}, hello.host ?? ""),
      el("td", {}, a.platform ?? ""),
      el("td", {}, stateName(a.state, "AGENT_STATE_")),
      el("td", {}, `${running.length}/${hello.slots ?? 0}`),
      el("td", {}, agentJobs(a, now)),
      el("td", {}, seen === undefined ? "" : `${formatSeconds((now - seen) / 1000)} ago`),
      el("td", {}, a.jobsDone ?? "0"),
      el("td", {}, a.state === "AGENT_STATE_DRAINING" ? "" : el("button", { onclick: () => drainAgent(hello.agentId) }, "drain")));
  });
  $("agents-body").replaceChildren(...(rows.length > 0 ? rows : [el("tr", {}, el("td", { colspan: 9 }, "no agents connected"))]));
}

function render() {
  $("token-state").textContent = getToken() === "" ? "no token (read-only)" : "operator token set";
  $("problem").textContent = page.problem;
  renderBuilds();
  renderSummary();
  renderRunning();
  renderFailures();
  renderJobs();
  renderAgents();
}

// ---- start ------------------------------------------------------------

function start() {
  $("cancel-build").addEventListener("click", () => void cancelBuild());
  $("token-button").addEventListener("click", openTokenDialog);
  $("token-save").addEventListener("click", saveToken);
  $("token-clear").addEventListener("click", () => {
    $("token-input").value = "";
    saveToken();
  });
  $("token-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter") saveToken();
  });
  $("log-close").addEventListener("click", closeLog);
  $("job-filter").addEventListener("change", (e) => {
    page.jobFilter = e.target.value;
    renderJobs();
  });
  for (const button of document.querySelectorAll("[data-report]")) button.addEventListener("click", () => void showReport(button.dataset.report));
  window.addEventListener("hashchange", () => void refreshBuilds());
  render();
  void refreshBuilds();
  void refreshAgents();
  setInterval(() => {
    void refreshBuilds();
    void refreshAgents();
    const b = page.status?.build;
    if (b === undefined || b.state === "BUILD_STATE_RUNNING" || b.state === "BUILD_STATE_SCANNING") void refreshStatus();
    else render();
  }, POLL_MS);
}

start();
