// @ts-check
// ComfyUI's validation refusals (/prompt's 400: {error, node_errors}) read for the sidebar form: which parameter
// each node error concerns, by node id and input name. No host import: tests/js feeds it /prompt's answers.

// A refusal that carries ComfyUI's /prompt answer ({error, node_errors}): ours (the endpoint's validation) or
// ComfyUI's own POST /prompt.
export function refusalBody(err) {
  return err?.body && typeof err.body === "object" && err.body.node_errors && typeof err.body.node_errors === "object" ? err.body : null;
}

// Each node error's reasons as "message: details", by "node id/input name" ("node id/" for a node's own).
export function nodeReasons(nodeErrors) {
  const out = new Map();
  for (const [id, entry] of Object.entries(nodeErrors ?? {})) {
    for (const error of entry?.errors ?? []) {
      const key = `${id}/${error?.extra_info?.input_name ?? ""}`;
      const text = [error?.message, error?.details].filter(Boolean).join(": ");
      out.set(key, out.has(key) ? `${out.get(key)}; ${text}` : text);
    }
  }
  return out;
}

// Where each parameter's value is checked by ComfyUI: its own node's input ("node id/input", and "node id/" for
// the node's own errors) and, once an endpoint's prompt has the value written in (core/parameters.py `lower`),
// every input its node is linked to.
export function parameterTargets(props, prompt) {
  const targets = new Map();
  const byNode = new Map();
  for (const [name, prop] of Object.entries(props)) {
    const at = prop["x-node"];
    if (!at) continue;
    targets.set(`${at.id}/${at.input}`, name);
    targets.set(`${at.id}/`, name);
    byNode.set(String(at.id), name);
  }
  for (const [id, node] of Object.entries(prompt ?? {})) {
    for (const [input, value] of Object.entries(node?.inputs ?? {})) {
      const name = Array.isArray(value) && value.length === 2 ? byNode.get(String(value[0])) : undefined;
      if (name !== undefined && !targets.has(`${id}/${input}`)) targets.set(`${id}/${input}`, name);
    }
  }
  return targets;
}

// The parameter a node error's key ("node id/input name") concerns, if any: its input's, else its node's own.
export function parameterOf(targets, key) {
  return targets.get(key) ?? targets.get(`${key.split("/")[0]}/`);
}
