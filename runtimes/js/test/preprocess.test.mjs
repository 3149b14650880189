// Preprocessing against Python's (torchvision antialiased resize + centre crop).
import assert from "node:assert/strict";
import { test } from "node:test";

import { preprocessFrame } from "../dist/index.js";
import { bytes, floats, info, maxAbsDiff } from "./helpers.mjs";

for (const item of info.preprocess) {
  test(`${item.height}x${item.width} -> resize ${item.resize}, crop ${item.crop}`, () => {
    const rgb = bytes(item.raw);
    const expected = floats(item.expected);
    const got = preprocessFrame({ data: rgb, width: item.width, height: item.height, format: "rgb" },
      item.resize, item.crop);
    assert.ok(maxAbsDiff(got, expected) <= 1e-5, `rgb differs by ${maxAbsDiff(got, expected)}`);
    const rgba = new Uint8Array(item.width * item.height * 4);
    for (let p = 0; p < item.width * item.height; p++) {
      rgba.set(rgb.subarray(3 * p, 3 * p + 3), 4 * p);
      rgba[4 * p + 3] = 17;
    }
    const fromRgba = preprocessFrame({ data: rgba, width: item.width, height: item.height, format: "rgba" },
      item.resize, item.crop);
    assert.deepEqual(fromRgba, got);
  });
}
