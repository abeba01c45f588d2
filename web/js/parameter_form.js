// The run form of a selected template: one input per parameter of its schema (GET /templates/{name}
// answers `parameters`, a JSON Schema with x-kind per property), prefilled with the defaults, checked
// as the user types, and a Run button that POSTs /templates/{name}/executions {"inputs": {...}}.
// The server checks the values again and has the last word: its 422 reasons show next to the inputs.
import { call, toast, toastError } from "./api.js";
import { el } from "./dom.js";

const NUMERIC = new Set(["integer", "seed", "float"]);

function kindOf(prop) {
  if (prop["x-kind"]) return prop["x-kind"];
  if (prop.type === "boolean") return "boolean";
  if (prop.type === "integer") return "integer";
  if (prop.type === "number") return "float";
  return Array.isArray(prop.enum) ? "choice" : "text";
}

function inputFor(name, prop, kind) {
  const testid = "sagemaker-param-input";
  const common = { class: "sagemaker-input", name, "data-testid": testid, "data-param": name };
  if (kind === "boolean") {
    return el("input", { type: "checkbox", name, "data-testid": testid, "data-param": name, checked: prop.default === true });
  }
  if ((kind === "choice" || kind === "model") && Array.isArray(prop.enum)) {
    const options = prop.enum.map((v) => el("option", { value: v, selected: v === prop.default }, v));
    if (!prop.enum.includes(prop.default)) options.unshift(el("option", { value: "", selected: true }, "(choose)"));
    return el("select", common, options);
  }
  if (NUMERIC.has(kind)) {
    const step = prop["x-step"] ?? prop.multipleOf ?? (kind === "float" ? "any" : 1);
    return el("input", { ...common, type: "number", min: prop.minimum, max: prop.maximum, step, value: prop.default ?? "" });
  }
  if (kind === "text" && !(prop.maxLength > 0 && prop.maxLength <= 80)) {
    return el("textarea", { ...common, rows: 2, maxlength: prop.maxLength || undefined, spellcheck: "false", value: prop.default ?? "" });
  }
  // text (short), image (a file name in ComfyUI's input folder), model without listed options
  const placeholder = kind === "image" ? "file name in ComfyUI's input folder" : undefined;
  return el("input", { ...common, type: "text", autocomplete: "off", spellcheck: "false", placeholder, value: prop.default ?? "" });
}

// [value, reason]: the value to send (undefined: send nothing) and what is wrong with it, if anything.
function readValue(input, prop, kind, required) {
  if (kind === "boolean") return [input.checked, null];
  const raw = input.value;
  if (raw === "") return [undefined, required ? "required" : null];
  if (NUMERIC.has(kind)) {
    const value = Number(raw);
    if (!Number.isFinite(value)) return [undefined, "must be a number"];
    if (kind !== "float" && !Number.isInteger(value)) return [value, "must be a whole number"];
    const lo = prop.minimum;
    const hi = prop.maximum;
    if ((lo !== undefined && value < lo) || (hi !== undefined && value > hi)) return [value, `must be from ${lo} to ${hi}`];
    return [value, null];
  }
  if (prop.maxLength && raw.length > prop.maxLength) return [raw, `must be at most ${prop.maxLength} characters`];
  if (Array.isArray(prop.enum) && !prop.enum.includes(raw)) return [raw, `must be one of ${prop.enum.join(", ")}`];
  return [raw, null];
}

// The per-field reasons of a 422 (api.js keeps error.fields on the error).
function fieldReasons(err) {
  return err.fields && typeof err.fields === "object" ? err.fields : {};
}

export class ParameterForm {
  constructor() {
    this.root = el("div", { class: "sagemaker-param-form", "data-testid": "sagemaker-param-form", hidden: true });
    this.name = null;
    this.fields = new Map(); // name -> {input, message, prop, kind}
  }

  // Shows the form of a template (the GET /templates/{name} answer); no parameters, no form.
  show(template) {
    const props = template?.parameters?.properties ?? {};
    this.fields.clear();
    if (!template || Object.keys(props).length === 0) {
      this.name = null;
      this.root.hidden = true;
      this.root.replaceChildren();
      return;
    }
    this.name = template.name;
    this.required = new Set(template.parameters.required ?? []);
    const rows = Object.entries(props).map(([name, prop]) => this.row(name, prop));
    this.status = el("div", { class: "sagemaker-muted", "data-testid": "sagemaker-param-status", hidden: true });
    this.run = el("button", { class: "sagemaker-button sagemaker-primary", "data-testid": "sagemaker-param-run", onclick: () => this.submit() }, "Run");
    this.root.replaceChildren(
      el("div", { class: "sagemaker-dialog-title" }, `Run ${template.name}`),
      ...rows,
      el("div", { class: "sagemaker-dialog-buttons" }, [this.run]),
      this.status,
    );
    this.root.dataset.template = template.name;
    this.root.hidden = false;
  }

  row(name, prop) {
    const kind = kindOf(prop);
    const input = inputFor(name, prop, kind);
    const message = el("div", { class: "sagemaker-error", "data-testid": "sagemaker-param-error", "data-param": name, hidden: true });
    const field = { input, message, prop, kind };
    this.fields.set(name, field);
    input.addEventListener(kind === "boolean" || input.tagName === "SELECT" ? "change" : "input", () => this.check(name));
    const label = `${name}${this.required.has(name) ? " *" : ""}`;
    const title = el("span", { class: "sagemaker-label sagemaker-param-label" }, label);
    const children = kind === "boolean"
      ? [el("label", { class: "sagemaker-check" }, [input, title])]
      : [el("label", { class: "sagemaker-field" }, [title, input])];
    if (prop.description) children.push(el("div", { class: "sagemaker-muted sagemaker-param-description" }, prop.description));
    children.push(message);
    return el("div", { class: "sagemaker-param", "data-testid": "sagemaker-param", "data-param": name, "data-kind": kind }, children);
  }

  setMessage(name, reason) {
    const field = this.fields.get(name);
    if (!field) return;
    field.message.hidden = !reason;
    field.message.textContent = reason || "";
    field.input.classList.toggle("sagemaker-invalid", Boolean(reason));
  }

  check(name) {
    const { input, prop, kind } = this.fields.get(name);
    const [value, reason] = readValue(input, prop, kind, this.required.has(name));
    this.setMessage(name, reason);
    return [value, reason];
  }

  // The values as they stand; client-side reasons are shown but do not stop the run (the server decides).
  values() {
    const inputs = {};
    for (const name of this.fields.keys()) {
      const [value] = this.check(name);
      if (value !== undefined) inputs[name] = value;
    }
    return inputs;
  }

  setStatus(text) {
    this.status.hidden = !text;
    this.status.textContent = text || "";
  }

  async submit() {
    const name = this.name;
    const inputs = this.values();
    this.run.disabled = true;
    this.setStatus("Starting…");
    try {
      const answer = await call("POST", `/templates/${encodeURIComponent(name)}/executions`, { inputs });
      if (name !== this.name) return;
      const state = answer?.execution?.state ?? "running";
      const text = state === "succeeded" || state === "failed" || state === "cancelled"
        ? `${state}, see Executions` : "running, see Executions";
      this.setStatus(text);
      toast("success", `Run of ${name} started`, answer?.execution_id);
    } catch (err) {
      if (name !== this.name) return;
      this.setStatus("");
      if (err.status === 422) {
        const reasons = fieldReasons(err);
        const shown = Object.entries(reasons).filter(([param]) => this.fields.has(param));
        for (const [param, reason] of shown) this.setMessage(param, reason);
        if (shown.length === 0) toastError(`Could not run ${name}`, err);
      } else {
        toastError(`Could not run ${name}`, err);
      }
    } finally {
      this.run.disabled = false;
    }
  }
}
