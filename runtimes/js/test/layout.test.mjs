// The channels-first frames the session holds, in the channels-last layout of LiteRT graphs.
import assert from "node:assert/strict";
import { test } from "node:test";

import { layoutTransform } from "../dist/litert.js";

test("NCTHW frames become NTHWC (2 clips, 2 frames per step), in one reused buffer", () => {
  const [batch, t, r] = [2, 2, 5];
  const transform = layoutTransform({ input: { layout: "NTHWC", shape: [batch, t, r, r, 3] } });
  const frames = Float32Array.from({ length: batch * 3 * t * r * r }, (_, i) => i);
  const out = transform(frames);
  for (let b = 0; b < batch; b++) for (let c = 0; c < 3; c++) for (let f = 0; f < t; f++) {
    for (let p = 0; p < r * r; p++) {
      assert.equal(out[((b * t + f) * r * r + p) * 3 + c], frames[((b * 3 + c) * t + f) * r * r + p]);
    }
  }
  assert.equal(transform(frames), out);
});

test("NCTHW frames pass as they are; other layouts are refused in one line", () => {
  const frames = new Float32Array(3);
  assert.equal(layoutTransform({ input: { layout: "NCTHW", shape: [1, 3, 1, 1, 1] } })(frames), frames);
  assert.throws(() => layoutTransform({ input: { layout: "NHWCT", shape: [1, 1, 1, 3, 1] } }),
    /^ArtifactError: input.layout 'NHWCT' is not supported \(NCTHW or NTHWC\); re-export the artifact$/);
});
