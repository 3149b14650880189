// Shared by the Node tests: the case folder written by tests/test_js_runtime.py.
import { cpSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const CASE = process.env.GRW_JS_CASE;
if (!CASE) throw new Error("GRW_JS_CASE is not set: run these tests with `npm test`");
export const info = JSON.parse(readFileSync(join(CASE, "case.json"), "utf8"));

export function bytes(name) {
  return new Uint8Array(readFileSync(join(CASE, name)));
}

export function floats(name) {
  return new Float32Array(bytes(name).buffer);
}

export function maxAbsDiff(a, b) {
  if (a.length !== b.length) throw new Error(`lengths differ: ${a.length} vs ${b.length}`);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

export function argmax(values) {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/** A fresh copy of an artifact folder, to damage. */
export function copyArtifact(source) {
  const target = join(mkdtempSync(join(tmpdir(), "grw-js-")), "artifact");
  cpSync(source, target, { recursive: true });
  return target;
}
