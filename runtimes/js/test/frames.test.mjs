// Bad frames are refused with the states unchanged; a non-finite step keeps the states.
import assert from "node:assert/strict";
import { test } from "node:test";

import { InputShapeError, NonFiniteOutputError, Session } from "../dist/node.js";
import { bytes, info } from "./helpers.mjs";

const [, height, width] = info.frames;
const good = { data: bytes("frames.bin").subarray(0, height * width * 3), width, height, format: "rgb" };

test("bad frames are refused with one readable line and leave the stream alone", async () => {
  const session = await Session.create(info.artifact, { threads: 1 });
  const reference = await Session.create(info.artifact, { threads: 1 });
  const side = session.manifest.input.shape[4];
  const size = 3 * side * side;
  const refused = [
    [{ data: new Uint8Array(0), width: 0, height: 4, format: "rgb" }, /empty frame \(0x4\)/],
    [{ data: new Uint8Array(10), width: 4, height: 4, format: "rgb" }, /a 4x4 rgb frame has 48 bytes, got 10/],
    [new Float32Array(0), /empty frame/],
    [new Float32Array(size).fill(Number.NaN), /non-finite value \(NaN\)/],
    [new Float32Array(size).fill(Number.POSITIVE_INFINITY), /non-finite value \(Infinity\)/],
    [new Float32Array(size).fill(200), /must lie in \[0, 1\].*divide uint8 pixels by 255/],
    [new Float32Array(size).fill(-0.01), /must lie in \[0, 1\]/],
    [new Float32Array(size + 1), /expected a preprocessed frame of 1 x 3 x 1 x \d+ x \d+ float32 values/],
    ["frame.png", /a frame must be an image/],
    [{ data: [1, 2, 3], width: 1, height: 1 }, /Uint8Array/],
  ];
  await session.push(good);
  await reference.push(good);
  for (const [frame, message] of refused) {
    await assert.rejects(session.push(frame), (error) => {
      assert.ok(error instanceof InputShapeError, `${error.name}: ${error.message}`);
      assert.match(error.message, message);
      return true;
    });
  }
  assert.equal(session.frames, 1);
  assert.deepEqual(await session.push(good), await reference.push(good));
  await session.push(new Float32Array(size).fill(1.0005));  // within the 1e-3 margin
  await session.release();
  await reference.release();
});

test("a non-finite step keeps the states, raises and counts a fault", async () => {
  const session = await Session.create(info.nonfinite);
  const black = new Float32Array(3 * 8 * 8), grey = new Float32Array(3 * 8 * 8).fill(0.5);
  assert.ok(Math.abs((await session.push(grey))[0] - Math.log(0.5)) < 1e-6);
  await assert.rejects(session.push(black), (error) => {
    assert.ok(error instanceof NonFiniteOutputError);
    assert.match(error.message, /non-finite values \(fault 1\); the states are unchanged.*onNonfinite: 'reset'/);
    return true;
  });
  assert.equal(session.faults, 1);
  assert.equal(session.frames, 1);
  // count was 1 before the failed step and is still 1
  assert.ok(Math.abs((await session.push(grey))[0] - (Math.log(0.5) + 1)) < 1e-6);
  assert.equal((await session.classify()).logits.length, 1);
  await session.release();
});

test("onNonfinite 'reset' restarts the stream and counts the fault", async () => {
  const session = await Session.create(info.nonfinite, { onNonfinite: "reset" });
  const black = new Float32Array(3 * 8 * 8), grey = new Float32Array(3 * 8 * 8).fill(0.5);
  const warn = console.warn;
  const warnings = [];
  console.warn = (line) => warnings.push(line);
  try {
    await session.push(grey);
    assert.equal(await session.push(black), null);
  } finally {
    console.warn = warn;
  }
  assert.match(warnings[0], /resetting the stream/);
  assert.equal(session.faults, 1);
  assert.equal(session.frames, 0);
  assert.ok(Math.abs((await session.push(grey))[0] - Math.log(0.5)) < 1e-6);
  await session.release();
});
