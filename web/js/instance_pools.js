// @ts-check
// Capacity fallback in the page (issue 35): the endpoint form's "fallback types" field, read into the config's
// ordered `instance_types` (the instance type first, then these, tried in order when the one before has no
// capacity: core/endpoint_config.py, aws/instance_pools.py), and what an endpoint row says of the type serving.
// The server checks the list again and its 400 message is shown; these say the same things first.

export const MAX_INSTANCE_TYPES = 5; // SageMaker's InstancePools: 1 to 5 pools
const INSTANCE_TYPE = /^ml\.[a-z0-9-]+\.[a-z0-9]+$/;

/** The fallback types typed, separated by commas or spaces. @param {string} text @returns {string[]} */
export function fallbackTypes(text) {
  return text.split(/[\s,]+/).filter((t) => t !== "");
}

/** What is wrong with the list, said as the server would; null when it looks fine.
 * @param {string} first the instance type @param {string[]} fallbacks @returns {string | null} */
export function fallbackProblem(first, fallbacks) {
  if (fallbacks.length > MAX_INSTANCE_TYPES - 1) {
    return `At most ${MAX_INSTANCE_TYPES - 1} fallback types (SageMaker tries ${MAX_INSTANCE_TYPES} instance types at most)`;
  }
  const seen = new Set([first]);
  for (const t of fallbacks) {
    if (!INSTANCE_TYPE.test(t)) return `Fallback type ${t} must look like ml.g6.xlarge`;
    if (seen.has(t)) return `${t} is listed twice`;
    seen.add(t);
  }
  return null;
}

/** The config's instance fields: `instance_types` only when there is a fallback (else the config is today's).
 * @param {string} first @param {string[]} fallbacks @returns {{instance_type: string, instance_types?: string[]}} */
export function instanceFields(first, fallbacks) {
  return fallbacks.length ? { instance_type: first, instance_types: [first, ...fallbacks] } : { instance_type: first };
}

/** The form's price line of a fallback type, from its quote's sentence. @param {string} type @param {string} text */
export function fallbackPriceText(type, text) {
  return `if it falls back to ${type}: ${text}`;
}

/** @typedef {{instance_type: string, priority: number | null, instances: number}} PoolView */

/** What a row says after "N instances" of an endpoint with instance pools: the types its instances run on, and
 * that they are a fallback when none runs on the preferred type; "" without pools.
 * @param {{instance_pools?: PoolView[] | null}} e @returns {string} */
export function poolsText(e) {
  const pools = e.instance_pools ?? [];
  const preferred = pools.find((p) => p.priority === 1);
  const running = pools.filter((p) => p.instances > 0);
  if (!running.length) {
    const others = pools.length - 1;
    return preferred ? `× ${preferred.instance_type} (or ${others} fallback type${others === 1 ? "" : "s"})` : "";
  }
  const on = running.length === 1 ? running[0].instance_type : running.map((p) => `${p.instances} × ${p.instance_type}`).join(" + ");
  const fellBack = preferred !== undefined && !running.includes(preferred);
  return `on ${on}${fellBack ? ` (fallback: ${preferred.instance_type} had no capacity)` : ""}`;
}
