// Runs the conformance suite through the JS package (backend-js, built by scripts/serve-web
// into ./pkg with its `conformance` feature): Backend.create, then backend.runConformance.
// Shows the adapter and one row per check. Query: ?engine=webgpu (default) | cpu | auto,
// cases=N, checks=a,b, seed=S.
//
// State for tests that drive the page: <body data-state="loading|running|done|error"
// data-ok="true|false">, and the whole report as JSON in #report-json.

import init, { Backend } from "./pkg/index.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const rows = new Map();
let order = [];
const outcome = new Map(); // check -> "pass" | "fail" | fraction done

function setState(state, ok) {
  document.body.dataset.state = state;
  if (ok !== undefined) document.body.dataset.ok = String(ok);
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

function sci(x) {
  return x === 0 ? "0" : x.toExponential(2);
}

function showStart(start) {
  const dl = $("adapter");
  dl.replaceChildren();
  const add = (k, v) => {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    dl.append(dt, dd);
  };
  add("backend", start.backend);
  const b = start.browser_adapter;
  if (b) {
    add("vendor / architecture", `${b.vendor || "?"} / ${b.architecture || "?"}`);
    if (b.device) add("device", b.device);
    if (b.description) add("description", b.description);
    add("fallback (software) adapter", String(b.is_fallback));
  }
  const a = start.adapter;
  if (a) {
    add("wgpu backend / device type", `${a.backend} / ${a.device_type}`);
    add("features used", a.features.length ? a.features.join(", ") : "none");
    add("max buffer / storage binding", `${a.max_buffer_size} / ${a.max_storage_binding} bytes`);
    add("workgroup storage / invocations", `${a.max_workgroup_storage} bytes / ${a.max_invocations}`);
  }
  add("user agent", navigator.userAgent);

  $("config").textContent = JSON.stringify(
    { cases: start.cases, seed: start.seed, profile: start.profile, expectations: start.expectations },
    null,
    2,
  );

  const tbody = $("checks").querySelector("tbody");
  tbody.replaceChildren();
  order = start.requested;
  for (const check of order) {
    const tr = document.createElement("tr");
    cell(tr, check);
    for (let i = 0; i < 7; i++) cell(tr, "");
    tbody.appendChild(tr);
    rows.set(check, tr);
  }
  draw();
}

function showProgress(check, done, total) {
  const tr = rows.get(check);
  if (!tr) return;
  tr.className = "running";
  tr.children[1].textContent = `${done} / ${total}`;
  outcome.set(check, total ? done / total : 0);
  $("status").textContent = `Running ${check}: case ${done} of ${total}`;
  draw();
}

function showCheck(r) {
  const tr = rows.get(r.check);
  if (!tr) return;
  const ok = r.failed === 0;
  tr.className = ok ? "pass" : "fail";
  const c = tr.children;
  c[1].textContent = String(r.passed);
  c[2].textContent = String(r.failed);
  c[3].textContent = String(r.expected_failures);
  c[4].textContent = sci(r.worst_ratio);
  c[5].textContent = sci(r.worst_abs);
  c[6].textContent = r.millis.toFixed(0);
  c[7].textContent = r.notes.join("; ");
  outcome.set(r.check, ok ? "pass" : "fail");
  if (!ok) {
    $("failures-section").hidden = false;
    for (const f of r.failures) {
      $("failures").textContent +=
        `${r.check}: ${f.message}\n` +
        (f.case ? `  minimal case (after ${f.shrink_steps} shrink steps): ${f.case}\n` : "") +
        (f.case_seed !== null ? `  case seed: ${f.case_seed}\n` : "") +
        "\n";
    }
  }
  draw();
}

// One segment per check: green passed, red failed, amber the running one's progress.
function draw() {
  const canvas = $("gpu-canvas");
  const ctx = canvas.getContext("2d");
  if (!ctx || order.length === 0) return;
  const w = canvas.width / order.length;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  order.forEach((check, i) => {
    const o = outcome.get(check);
    if (o === "pass" || o === "fail") {
      ctx.fillStyle = o === "pass" ? "#2e7d32" : "#c62828";
      ctx.fillRect(i * w + 1, 0, w - 2, canvas.height);
    } else if (typeof o === "number") {
      ctx.fillStyle = "#f9a825";
      ctx.fillRect(i * w + 1, 0, (w - 2) * o, canvas.height);
    }
  });
}

async function main() {
  await init();
  setState("running");
  const engine = params.get("engine") ?? "webgpu";
  $("status").textContent = engine === "cpu" ? "Opening the CPU engine…" : "Opening the WebGPU adapter…";
  const backend = await Backend.create("gpu-canvas", engine);
  const report = await backend.runConformance(
    { cases: Number(params.get("cases") ?? 0), checks: params.get("checks") ?? "", seed: params.get("seed") ?? "" },
    { onStart: showStart, onProgress: showProgress, onCheck: showCheck },
  );
  const result = JSON.stringify(report);
  $("report-json").textContent = result;
  const failed = report.checks.filter((c) => c.failed > 0).map((c) => c.check);
  const total = report.checks.reduce((s, c) => s + c.millis, 0) / 1000;
  $("summary").textContent = report.ok
    ? `Every check passed (${report.checks.length} checks, ${total.toFixed(1)} s).`
    : `Failed: ${failed.join(", ")}.`;
  $("status").textContent = report.ok
    ? `All ${report.checks.length} checks passed on ${report.backend}.`
    : `${failed.length} of ${report.checks.length} checks failed on ${report.backend}.`;
  setState("done", report.ok);
}

main().catch((e) => {
  const message = e && e.message ? e.message : String(e);
  $("status").textContent = `The suite could not run: ${message}`;
  $("report-json").textContent = JSON.stringify({ ok: false, error: message });
  setState("error", false);
});
