// Transfer timings of the JS package (not a test; `run.py --page bench.html`): for each
// size, the median time of upload(slice, ptr), write(ptr, Float32Array), readF32 and
// download(ptr, slice), each followed by synchronize so that the device work is included,
// and the staged bytes each one adds. Used for docs/ZERO-COPY.md.
import init, { Backend } from "./pkg/index.js";

const params = new URLSearchParams(location.search);
const engine = params.get("engine") ?? "webgpu";
const reps = Number(params.get("reps") ?? 15);

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function time(b, fn) {
  const ms = [];
  let staged = 0;
  for (let i = 0; i < reps + 2; i++) {
    await b.synchronize();
    const s0 = b.memoryInfo().stagedBytes ?? 0;
    const t0 = performance.now();
    await fn();
    await b.synchronize();
    const t = performance.now() - t0;
    if (i >= 2) ms.push(t);
    staged = (b.memoryInfo().stagedBytes ?? 0) - s0;
  }
  return { ms: median(ms), staged };
}

async function main() {
  await init();
  document.body.dataset.state = "running";
  const b = await Backend.create("gpu-canvas", engine);
  const rows = [];
  for (const mib of [1, 4, 16]) {
    const n = (mib << 20) / 4;
    document.getElementById("status").textContent = `Timing ${mib} MiB`;
    const host = new Float32Array(n).map((_, i) => i % 1000);
    const slice = b.driver.heap.allocF32(n);
    slice.write(host);
    const dst = b.driver.heap.allocF32(n);
    const p = b.alloc(4 * n);
    const cases = {
      "upload(slice, ptr)": () => b.upload(slice, p),
      "write(ptr, Float32Array)": () => b.write(p, host),
      "readF32(ptr, n)": () => b.readF32(p, n),
      "download(ptr, slice)": () => b.download(p, dst),
    };
    for (const [name, fn] of Object.entries(cases)) {
      const r = await time(b, fn);
      rows.push({ op: name, mib, ms: r.ms, gbps: (4 * n) / (r.ms / 1e3) / 1e9, staged: r.staged });
      document.getElementById("log").textContent += `${name} ${mib} MiB: ${r.ms.toFixed(2)} ms, staged ${r.staged}\n`;
    }
    b.free(p);
    slice.free();
    dst.free();
  }
  document.getElementById("report-json").textContent = JSON.stringify({ engine: b.engine, backend: b.name, ok: true, bench: rows, tests: [] });
  document.getElementById("status").textContent = "Done.";
  document.body.dataset.state = "done";
}

main().catch((e) => {
  document.getElementById("report-json").textContent = JSON.stringify({ ok: false, error: `${e && e.name}: ${e && e.message}` });
  document.body.dataset.state = "error";
});
