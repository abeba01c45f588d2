// @ts-check
// Where a template's proof stands on its environment's endpoint (core/proofs.py's results in the endpoint's
// view): passed or failed on the version it serves, failed on a version it was not switched to, or not known.
// No import of the page: the node tests read it (tests/js).

/**
 * @typedef {object} ProofResult
 * @property {string} template
 * @property {boolean} passed
 * @property {string[]} problems
 */

/**
 * @typedef {object} ProofRun
 * @property {number} version
 * @property {boolean} passed
 * @property {ProofResult[]} results
 */

/**
 * What its endpoint's proof runs say of a template: passed or failed on the serving version, failed on the
 * version that was not switched to, or nothing known.
 * @param {{name: string, proof?: boolean}} t
 * @param {{version?: number | null, proofs?: ProofRun | null, proof_failed?: ProofRun | null} | null} endpoint
 * @returns {{state: "passed" | "failed" | "blocked" | "unproven" | "none", text: string, title: string}}
 */
export function proofStatus(t, endpoint) {
  if (!t.proof) return { state: "none", text: "no proof", title: "Use one of its runs as its proof (Executions)" };
  const failed = endpoint?.proof_failed?.results.find((r) => r.template === t.name && !r.passed);
  if (failed && endpoint?.proof_failed)
    return { state: "blocked", text: `proof failed on v${endpoint.proof_failed.version}`, title: failed.problems.join("\n") };
  const result =
    endpoint?.proofs && endpoint.proofs.version === endpoint.version ? endpoint.proofs.results.find((r) => r.template === t.name) : null;
  if (!result) return { state: "unproven", text: "proof not run on this version", title: "its proof runs on the next deploy" };
  return result.passed
    ? { state: "passed", text: `proof passed on v${endpoint?.version}`, title: "its proof passed before traffic moved" }
    : { state: "failed", text: `proof failed on v${endpoint?.version}`, title: result.problems.join("\n") };
}
