// The Templates list's proof line (web/js/proof_status.js), from a template's summary and its endpoint's view.
import assert from "node:assert/strict";
import { test } from "node:test";
import { proofStatus } from "../../web/js/proof_status.js";

const passed = { version: 2, passed: true, results: [{ template: "T", passed: true, problems: [] }] };
const failed = { version: 3, passed: false, results: [{ template: "T", passed: false, problems: ["node 2 (SMTestScale): gone"] }] };

test("a template without a proof says so, whatever the endpoint ran", () => {
  assert.equal(proofStatus({ name: "T" }, { version: 2, proofs: passed }).state, "none");
  assert.equal(proofStatus({ name: "T", proof: false }, null).state, "none");
});

test("a proof passed or failed on the version served, or not run on it", () => {
  assert.deepEqual(proofStatus({ name: "T", proof: true }, { version: 2, proofs: passed }).text, "proof passed on v2");
  assert.equal(proofStatus({ name: "T", proof: true }, { version: 1, proofs: passed }).state, "unproven"); // rolled back
  assert.equal(proofStatus({ name: "U", proof: true }, { version: 2, proofs: passed }).state, "unproven"); // made since
  assert.equal(proofStatus({ name: "T", proof: true }, null).state, "unproven");
  const other = { ...passed, passed: false, results: [{ template: "T", passed: false, problems: ["x"] }] };
  assert.equal(proofStatus({ name: "T", proof: true }, { version: 2, proofs: other }).state, "failed");
});

test("a proof that stopped the last switch says on which version, with its problems", () => {
  const status = proofStatus({ name: "T", proof: true }, { version: 2, proofs: passed, proof_failed: failed });
  assert.deepEqual(status, { state: "blocked", text: "proof failed on v3", title: "node 2 (SMTestScale): gone" });
  // another template's failure does not make this one's
  assert.equal(proofStatus({ name: "U", proof: true }, { version: 2, proofs: passed, proof_failed: failed }).state, "unproven");
});
