// The artifact's self-test (selftest.bin) in Node.
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { ArtifactError, Session } from "../dist/node.js";
import { copyArtifact, info } from "./helpers.mjs";

for (const fused of [true, false]) {
  test(`the self-test passes (fused graph: ${fused})`, async () => {
    const session = await Session.create(info.artifact, { threads: 1, fused });
    const report = await session.selfTest();
    console.log(JSON.stringify(report));
    assert.ok(report.passed, report.problems.join("; "));
    assert.equal(report.frames, 8);
    assert.ok(report.maxAbsEmbeddings <= 1e-4 && report.maxAbsLogits <= 1e-3);
    assert.equal(session.frames, 0);
    await session.release();
  });
}

test("a wrong reference fails the self-test with the numbers", async () => {
  const artifact = copyArtifact(info.artifact);
  const manifest = JSON.parse(readFileSync(join(artifact, "manifest.json"), "utf8"));
  const path = join(artifact, "selftest.bin");
  const blob = readFileSync(path);
  const { offset } = manifest.selftest.logits;
  for (let i = 0; i < info.num_classes; i++) blob.writeFloatLE(i === 3 ? 100 : 0, offset + 4 * i);
  writeFileSync(path, blob);
  const session = await Session.create(artifact);
  const report = await session.selfTest();
  assert.equal(report.passed, false);
  assert.match(report.problems.join("; "), /logits differ by .* > 0\.001; top-1 is class \d+, the reference's 3/);
  await session.release();
});

test("an artifact without a self-test says so", async () => {
  const session = await Session.create(info.nonfinite);
  await assert.rejects(session.selfTest(), (error) => error instanceof ArtifactError && /has no self-test/.test(error.message));
  await session.release();
});

for (const [name, artifact] of Object.entries(info.others)) {
  test(`the self-test passes: ${name}`, async () => {
    const session = await Session.create(artifact, { threads: 1 });
    const report = await session.selfTest();
    console.log(name, JSON.stringify(report));
    assert.ok(report.passed, report.problems.join("; "));
    await session.release();
  });
}
