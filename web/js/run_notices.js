// @ts-check
// What a person is asked before ending runs, and told when someone else ended theirs (issue 32): Stop asks with the
// runs in flight on the endpoint and whose; cancelling someone else's run asks; the owner's page says who cancelled
// or stopped their run (the server names them in the run's `error.by`, core/executions.py).

/** @typedef {{name?: string, user?: string | null}} OwnerView */
/** @typedef {{id: string, state: string, template?: string | null, environment?: string | null,
 *   owner?: OwnerView | null, error?: {code?: string, message?: string, by?: string} | null}} RunView */

/** "Ben", "Ben (ana)" under --multi-user, as the Executions list names owners. @param {OwnerView | null | undefined} owner */
export const personOf = (owner) => (owner?.name ? `${owner.name}${owner.user ? ` (${owner.user})` : ""}` : "an older version");

const runOf = (/** @type {RunView} */ r) => `run of ${r.template ?? r.environment ?? "a workflow"}`;

/** The question before Stop: how many runs it ends, and whose.
 * @param {string} endpoint @param {RunView[]} inFlight @param {(r: RunView) => boolean} isMine @returns {string} */
export function stopQuestion(endpoint, inFlight, isMine) {
  if (!inFlight.length) return `No run is in flight on ${endpoint}. Start brings it back later.`;
  const counts = new Map();
  for (const r of inFlight) {
    const whose = isMine(r) ? "yours" : `${personOf(r.owner)}'s`;
    counts.set(whose, (counts.get(whose) ?? 0) + 1);
  }
  const whose = [...counts].map(([who, n]) => `${n} ${who}`).join(", ");
  const one = inFlight.length === 1;
  const told = inFlight.every(isMine)
    ? ""
    : one
      ? ", and its owner is told you stopped it"
      : ", and their owners are told you stopped them";
  const runs = one ? "1 run is" : `${inFlight.length} runs are`;
  return `${runs} in flight on ${endpoint} (${whose}): Stop ends ${one ? "it" : "them"}${told}.`;
}

/** The question before cancelling someone else's run. @param {RunView} r @returns {string} */
export function cancelQuestion(r) {
  return `This is ${personOf(r.owner)}'s ${runOf(r)}: cancelling it stops it for them, and they are told you cancelled it.`;
}

/** What the owner's page says when someone else ended their run; "" when nobody else did. @param {RunView} r */
export function endedByOther(r) {
  const by = r.error?.by;
  if (r.state !== "cancelled" || !by) return "";
  if (r.error?.code === "endpoint_stopped") return `${by} stopped ${r.environment ?? "the endpoint"}: your ${runOf(r)} ended`;
  return `${by} cancelled your ${runOf(r)}`;
}
