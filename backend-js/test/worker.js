// The worker half of the "Backend.create in a dedicated worker" test (tests.js): opens a
// backend without a canvas, runs a relu and posts the result (or the error's kind).
import init, { Backend, BackendError } from "./pkg/index.js";

self.onmessage = async (e) => {
  try {
    await init();
    const b = await Backend.create(undefined, e.data.engine);
    const x = b.uploadF32([1, -2, 3, -4]);
    b.unary("relu", x, x, 4);
    const out = Array.from(await b.readF32(x, 4));
    let canvasError = null;
    try {
      await Backend.create("gpu-canvas", "cpu");
    } catch (err) {
      canvasError = err instanceof BackendError ? err.kind : String(err);
    }
    self.postMessage({ engine: b.engine, out, canvasError });
  } catch (err) {
    self.postMessage({ error: `${err && err.name}: ${err && err.message}` });
  }
};
