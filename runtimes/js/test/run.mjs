// `npm test`: the package's Node tests and its Chromium test, on the case folder the Python
// toolkit writes (artifacts and reference results). GRW_JS_CASE names one (tests/test_js_runtime.py
// sets it); otherwise it is made once in .case/ with `python -m tests.js_case` from the
// repository root ($PYTHON, default python3, with grw-edge installed).
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(fileURLToPath(new URL("..", import.meta.url)));
let CASE = process.env.GRW_JS_CASE;
if (!CASE) {
  CASE = join(ROOT, ".case");
  if (!existsSync(join(CASE, "case.json"))) {
    console.log(`making the test case in ${CASE} (python -m tests.js_case; about a minute)`);
    const made = spawnSync(process.env.PYTHON ?? "python3", ["-m", "tests.js_case", CASE],
      { cwd: resolve(ROOT, "../.."), stdio: "inherit" });
    if (made.status !== 0) {
      console.error("could not make the test case: install grw-edge (pip install -e . in the repository root) " +
        "and set PYTHON to its interpreter, or point GRW_JS_CASE at a case folder");
      process.exit(1);
    }
  }
}
const files = readdirSync(join(ROOT, "test")).filter((f) => f.endsWith(".test.mjs")).sort()
  .map((f) => join("test", f));
const result = spawnSync(process.execPath, ["--test", "--test-reporter=spec", "--test-concurrency=1", ...files],
  { cwd: ROOT, stdio: "inherit", env: { ...process.env, GRW_JS_CASE: CASE } });
process.exit(result.status ?? 1);
