// Every damaged artifact gives its own readable message (never a bare onnxruntime error).
import assert from "node:assert/strict";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { ArtifactError, Session } from "../dist/node.js";
import { copyArtifact, info } from "./helpers.mjs";

/** Copy the artifact, let `damage` change it, expect an ArtifactError matching `message`. */
async function expectError(damage, message, options = {}) {
  const artifact = copyArtifact(info.artifact);
  const path = join(artifact, "manifest.json");
  const manifest = JSON.parse(readFileSync(path, "utf8"));
  const changed = damage(manifest, artifact);
  if (changed !== false) writeFileSync(path, JSON.stringify(manifest));
  await assert.rejects(Session.create(artifact, options), (error) => {
    assert.ok(error instanceof ArtifactError, `${error.name}: ${error.message}`);
    assert.match(error.message, message);
    assert.ok(!error.message.includes("\n"), "one line");
    return true;
  });
}

const cases = {
  "no manifest": [(m, dir) => rmSync(join(dir, "manifest.json")) ?? false, /is not an artifact: it has no manifest\.json/],
  "not JSON": [(m, dir) => writeFileSync(join(dir, "manifest.json"), "{oops") ?? false, /is not valid JSON/],
  "unknown format_version": [(m) => { m.format_version = 7; }, /format_version 7; this grw-edge-runtime reads up to 1: upgrade/],
  "missing field": [(m) => { delete m.states; }, /lacks the field 'states'/],
  "wrong field type": [(m) => { m.embed_dim = "64"; }, /field 'embed_dim' has the wrong type/],
  "unknown mode": [(m) => { m.mode = "batch"; }, /mode must be 'streaming' or 'clip'/],
  "missing file": [(m, dir) => { rmSync(join(dir, "head.onnx")); }, /names 'head\.onnx', which is missing/],
  "state entry incomplete": [(m) => { delete m.states[2].output; }, /states\[2\] lacks a valid 'output'/],
  "state shape mismatch": [(m) => { m.states[1].shape = [1, 9, 9, 9, 9]; m.fused.window_state.shape[1] += 0; },
    /state '.+': the manifest says shape \[1,9,9,9,9\], the graph \[/],
  "state dtype unsupported": [(m) => { m.states[0].dtype = "float16"; }, /has dtype float16; grw-edge-runtime keeps float32 states/],
  "state not in graph": [(m) => { m.states[0].input = "nonsense"; }, /the manifest does not match the graph \(.*has no input 'nonsense'\)/],
  "fp16 input": [(m) => { m.input.dtype = "float16"; }, /input dtype float16 is not supported/],
  "file size differs": [(m, dir) => { writeFileSync(join(dir, "labels.txt"), "x\n"); }, /labels\.txt has 2 bytes, the manifest says \d+/],
  "graph is not ONNX": [(m, dir) => { const p = join(dir, "step.onnx"); writeFileSync(p, Buffer.alloc(readFileSync(p).length, 7)); },
    /step\.onnx cannot be loaded by onnxruntime: /, { fused: false }],
  "hash differs (verify)": [(m, dir) => { const p = join(dir, "step.onnx"); writeFileSync(p, Buffer.alloc(readFileSync(p).length, 7)); },
    /step\.onnx: sha256 [0-9a-f]+ differs from the manifest's/, { verify: true }],
};

for (const [name, [damage, message, options]] of Object.entries(cases)) {
  test(name, () => expectError(damage, message, options));
}

test("no artifact directory", async () => {
  await assert.rejects(Session.create("/nonexistent/artifact"), /is not an artifact: it has no manifest\.json/);
});

test("the intact artifact opens and verifies", async () => {
  const session = await Session.create(info.artifact, { verify: true });
  assert.equal(session.manifest.backbone, "movineta0s");
  assert.equal(session.labels.length, info.num_classes);
  await session.release();
});
