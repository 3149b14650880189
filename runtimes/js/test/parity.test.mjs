// The JS session against the Python onnxruntime session, frame by frame.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Session } from "../dist/node.js";
import { argmax, bytes, floats, info, maxAbsDiff } from "./helpers.mjs";

const [count, height, width] = info.frames;
const frames = bytes("frames.bin");
const embeddings = floats("embeddings.bin");
const logits = floats("logits.bin");
const E = info.embed_dim, C = info.num_classes;

for (const fused of [true, false]) {
  test(`frame by frame equals Python (fused graph: ${fused})`, async () => {
    const session = await Session.create(info.artifact, { threads: 1, fused });
    let worstEmbeddings = 0, worstLogits = 0;
    for (let i = 0; i < count; i++) {
      const size = height * width * 3;
      const frame = { data: frames.subarray(i * size, (i + 1) * size), width, height, format: "rgb" };
      const got = await session.push(frame);
      worstEmbeddings = Math.max(worstEmbeddings, maxAbsDiff(got, embeddings.subarray(i * E, (i + 1) * E)));
      const result = await session.classify();
      const expected = logits.subarray(i * C, (i + 1) * C);
      worstLogits = Math.max(worstLogits, maxAbsDiff(result.logits, expected));
      assert.equal(result.top[0].index, argmax(expected), `top-1 differs at frame ${i}`);
      assert.equal(result.top.length, 5);
      assert.ok(result.top[0].score >= result.top[1].score && result.top[0].score <= 1);
    }
    console.log(`fused=${fused}: max |embeddings| ${worstEmbeddings.toExponential(2)}, ` +
      `max |logits| ${worstLogits.toExponential(2)} over ${count} frames`);
    assert.ok(worstEmbeddings <= 1e-4, `embeddings differ by ${worstEmbeddings}`);
    assert.ok(worstLogits <= 1e-3, `logits differ by ${worstLogits}`);
    assert.equal(session.frames, count);
    session.reset();
    assert.equal(session.frames, 0);
    await assert.rejects(session.classify(), /push at least one frame/);
    await session.release();
  });
}

test("reset restarts the stream exactly", async () => {
  const session = await Session.create(info.artifact, { threads: 1 });
  const size = height * width * 3;
  const frame = { data: frames.subarray(0, size), width, height, format: "rgb" };
  const first = await session.push(frame);
  await session.push(frame);
  session.reset();
  assert.deepEqual(await session.push(frame), first);
  assert.ok(session.stateBytes > 0);
  await session.release();
});

test("overlapping pushes run in order; a step running at reset() is dropped", async () => {
  const session = await Session.create(info.artifact, { threads: 1 });
  const reference = await Session.create(info.artifact, { threads: 1 });
  const size = height * width * 3;
  const frame = (i) => ({ data: frames.subarray(i * size, (i + 1) * size), width, height, format: "rgb" });
  const together = await Promise.all([0, 1, 2].map((i) => session.push(frame(i))));
  for (let i = 0; i < 3; i++) assert.deepEqual(together[i], await reference.push(frame(i)));
  const running = session.push(frame(3));
  session.reset();
  assert.equal(await running, null);
  reference.reset();
  assert.deepEqual(await session.push(frame(0)), await reference.push(frame(0)));
  assert.equal(session.frames, 1);
  await session.release();
  await reference.release();
});
