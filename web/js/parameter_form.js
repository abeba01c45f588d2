// @ts-check
// The run form of a selected template: one input per parameter of its schema (GET /templates/{name}
// answers `parameters`, a JSON Schema with x-kind per property), prefilled with the defaults, checked
// as the user types, and a Run button. With Prompt on AWS ticked, Run POSTs
// /templates/{name}/executions {"inputs": {...}} (the template's endpoint runs it); unticked, it asks
// /templates/{name}/prompt for the filled prompt and queues that on this ComfyUI (POST /prompt).
// The form never runs a value other than the one shown: Run is off while a field is invalid (the field says
// why, and so does the line under Run). The server has the last word: its 422 reasons, and ComfyUI's
// validation refusals (/prompt's `node_errors`, mapped to the fields by node id and input name), show under
// the fields, and the refused nodes are outlined on the canvas as ComfyUI's Run outlines them
// (node_outline.js). The run's images show under the form when it ends. When the canvas holds the same template,
// the run carries this page's client id, so the canvas follows it as it follows Queue Prompt; otherwise
// the run is the form's alone (another workflow's nodes must not show its progress or outputs).
import { api } from "../../../scripts/api.js";
import { app } from "../../../scripts/app.js";
import { call, toast, toastError } from "./api.js";
import { el } from "./dom.js";
import { executionCreated, outputImages, viewUrl } from "./executions.js";
import { formatDuration } from "./format.js";
import { nodeReasons, parameterOf, parameterTargets, refusalBody } from "./node_errors.js";
import { clearOutlines, outlineNodes } from "./node_outline.js";
import { isPromptOnAws, onSwitch } from "./switch.js";

const NUMERIC = new Set(["integer", "seed", "float"]);
const POLL_MS = 400;
const FINAL = new Set(["succeeded", "failed", "cancelled"]);
// The client id of runs the canvas does not follow: ComfyUI sends their events to no open socket.
const PRIVATE_CLIENT = `sagemaker-form-${Math.random().toString(36).slice(2)}`;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

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

// The canvas's parameter nodes by parameter name: {node, widget} with the widget holding the value (an
// image parameter's file, every other kind's "default"). Only while the canvas holds the form's template.
function canvasParameters() {
  const found = new Map();
  for (const node of app.graph?.nodes ?? []) {
    if (!String(node.type ?? "").startsWith("SageMakerParam")) continue;
    const name = node.widgets?.find((w) => w.name === "name")?.value;
    const widget = node.widgets?.find((w) => w.name === (node.type === "SageMakerParamImage" ? "image" : "default"));
    if (typeof name === "string" && widget && !found.has(name)) found.set(name, { node, widget });
  }
  return found;
}

// The per-field reasons of a 422 (api.js keeps error.fields on the error).
function fieldReasons(err) {
  return err.fields && typeof err.fields === "object" ? err.fields : {};
}

// The image files of ComfyUI's input folder, as the image parameter node offers them (its combo).
async function inputImages() {
  const res = await api.fetchApi("/object_info/SageMakerParamImage");
  const spec = res.ok ? (await res.json())?.SageMakerParamImage?.input?.required?.image : null;
  const options = Array.isArray(spec?.[0]) ? spec[0] : spec?.[1]?.options; // old and new combo shapes
  return Array.isArray(options) ? options : [];
}

// Puts a file in ComfyUI's input folder (its own /upload/image); resolves to the name to send.
async function uploadImage(file) {
  const body = new FormData();
  body.append("image", file);
  const res = await api.fetchApi("/upload/image", { method: "POST", body });
  if (!res.ok) throw new Error(`ComfyUI refused the upload: ${res.status} ${await res.text()}`);
  const { name, subfolder } = await res.json();
  return subfolder ? `${subfolder}/${name}` : name;
}

// The error of a finished local prompt, from its /history entry's messages.
function historyError(entry) {
  for (const [kind, data] of entry.status?.messages ?? []) {
    if (kind === "execution_error") return `${data.node_type ?? "a node"}: ${data.exception_message ?? "failed"}`;
    if (kind === "execution_interrupted") return "interrupted";
  }
  return "failed";
}

// ComfyUI's POST /prompt refusal ({error: {message, details}, node_errors}) in one line.
function promptRefusal(data, status) {
  const first = Object.values(data?.node_errors ?? {})[0];
  const detail = first?.errors?.[0];
  const what = data?.error?.message ?? `${status}`;
  return detail ? `${what}: ${first.class_type ?? "a node"}: ${detail.message} ${detail.details ?? ""}`.trim() : what;
}

export class ParameterForm {
  // Drawn by show() for a template with parameters.
  /** @type {Set<string>} */ required;
  /** @type {string[] | null} */ outputNodes;
  /** @type {HTMLDivElement} */ status;
  /** @type {HTMLDivElement | undefined} */ where;
  /** @type {HTMLDivElement} */ result;
  /** @type {HTMLButtonElement} */ run;
  /** @type {HTMLDivElement} */ blocked;
  /** @type {Map<string, string>} */ targets = new Map(); // "node id/input name" -> the parameter it carries
  running = false;
  wasShown = false; // in the page once: a form that left it for good stops hearing the switch

  // isLoaded(name): whether the canvas holds that template.
  /** @param {{isLoaded?: (name: string) => boolean}} [options] */
  constructor({ isLoaded = () => false } = {}) {
    this.isLoaded = isLoaded;
    this.root = el("div", { class: "sagemaker-param-form", "data-testid": "sagemaker-param-form", hidden: true });
    this.name = null;
    this.fields = new Map(); // name -> {input, message, prop, kind, synced}
    this.runs = 0; // only the latest run of the shown template may draw its result
    // Until the sidebar drops this form (a new one comes with the next sidebar).
    onSwitch(() => (this.root.isConnected || !this.wasShown ? this.drawWhere() : false));
  }

  // Shows the form of a template (the GET /templates/{name} answer); no parameters, no form.
  show(template) {
    const props = template?.parameters?.properties ?? {};
    this.fields.clear();
    clearOutlines(app);
    if (!template || Object.keys(props).length === 0) {
      this.name = null;
      this.root.hidden = true;
      this.root.replaceChildren();
      return;
    }
    this.name = template.name;
    this.runs += 1; // a run of the previous template no longer draws here
    this.required = new Set(template.parameters.required ?? []);
    const outputs = Object.values(template.parameters["x-outputs"] ?? {}).map((o) => String(o.node));
    this.outputNodes = outputs.length ? outputs : null;
    this.targets = parameterTargets(props, template.prompt);
    const rows = Object.entries(props).map(([name, prop]) => this.row(name, prop));
    this.status = el("div", { class: "sagemaker-muted", "data-testid": "sagemaker-param-status", hidden: true });
    this.where = el("div", { class: "sagemaker-muted sagemaker-note", "data-testid": "sagemaker-param-where" });
    this.result = el("div", {
      class: "sagemaker-execution-images sagemaker-param-result",
      "data-testid": "sagemaker-param-result",
      hidden: true,
    });
    this.run = el(
      "button",
      { class: "sagemaker-button sagemaker-primary", "data-testid": "sagemaker-param-run", onclick: () => this.submit() },
      "Run",
    );
    this.blocked = el("div", { class: "sagemaker-error", "data-testid": "sagemaker-param-blocked", hidden: true });
    this.running = false;
    this.root.replaceChildren(
      el("div", { class: "sagemaker-dialog-title" }, `Run ${template.name}`),
      ...rows,
      el("div", { class: "sagemaker-dialog-buttons" }, [this.run]),
      this.blocked,
      this.where,
      this.status,
      this.result,
    );
    this.drawWhere();
    this.root.dataset.template = template.name;
    this.root.hidden = false;
    for (const name of this.fields.keys()) this.check(name);
    this.readCanvas();
    this.drawRun();
  }

  // One truth with the canvas: while it holds this template, the form shows its parameter nodes' values
  // (read when shown, when the canvas changes and before Run) and writes each valid edit into them, so the
  // form's Run and ComfyUI's Run run the same values. A value the canvas has not changed since the form last
  // read or wrote it is not read again: an invalid value being typed (which the canvas never gets) stays.
  readCanvas() {
    if (!this.name || !this.isLoaded(this.name)) return;
    const nodes = canvasParameters();
    for (const [name, field] of this.fields) {
      const value = nodes.get(name)?.widget.value;
      if (value === undefined || Object.is(value, field.synced)) continue;
      field.synced = value;
      if (field.kind === "boolean") field.input.checked = value === true;
      else field.input.value = String(value);
      this.check(name);
    }
    this.drawRun();
  }

  writeCanvas(name) {
    if (!this.name || !this.isLoaded(this.name)) return;
    const found = canvasParameters().get(name);
    const field = this.fields.get(name);
    if (!found || !field) return;
    const [value, reason] = readValue(field.input, field.prop, field.kind, false);
    if (value === undefined || reason) return; // the canvas keeps a valid value; the form shows why not
    field.synced = value;
    found.widget.value = value;
    found.widget.callback?.(value);
    app.graph.setDirtyCanvas?.(true, true);
  }

  row(name, prop) {
    const kind = kindOf(prop);
    const input = inputFor(name, prop, kind);
    const message = el("div", { class: "sagemaker-error", "data-testid": "sagemaker-param-error", "data-param": name, hidden: true });
    const field = { input, message, prop, kind };
    this.fields.set(name, field);
    input.addEventListener(kind === "boolean" || input.tagName === "SELECT" ? "change" : "input", () => {
      this.check(name);
      this.writeCanvas(name);
      this.drawRun();
    });
    const label = `${name}${this.required.has(name) ? " *" : ""}`;
    const title = el("span", { class: "sagemaker-label sagemaker-param-label" }, label);
    /** @type {HTMLElement[]} */
    const children =
      kind === "boolean"
        ? [el("label", { class: "sagemaker-check" }, [input, title])]
        : [el("label", { class: "sagemaker-field" }, [title, input])];
    if (kind === "image") children.push(this.imagePicker(name, input));
    if (prop.description) children.push(el("div", { class: "sagemaker-muted sagemaker-param-description" }, prop.description));
    children.push(message);
    return el("div", { class: "sagemaker-param", "data-testid": "sagemaker-param", "data-param": name, "data-kind": kind }, children);
  }

  // An image parameter: the input folder's images to pick from as the name is typed, and an upload.
  imagePicker(name, input) {
    const list = el("datalist", { id: `sagemaker-param-images-${name}` });
    input.setAttribute("list", list.id);
    inputImages()
      .then((names) => list.replaceChildren(...names.map((n) => el("option", { value: n }))))
      .catch(() => {}); // the list is a help only: typing a name still works
    const file = el("input", {
      type: "file",
      accept: "image/*",
      hidden: true,
      "data-testid": "sagemaker-param-upload-file",
      "data-param": name,
    });
    const button = el(
      "button",
      {
        class: "sagemaker-button",
        type: "button",
        title: "Upload an image into ComfyUI's input folder",
        "data-testid": "sagemaker-param-upload",
        "data-param": name,
        onclick: () => file.click(),
      },
      "Upload…",
    );
    file.addEventListener("change", async () => {
      const chosen = file.files?.[0];
      if (!chosen) return;
      button.disabled = true;
      try {
        input.value = await uploadImage(chosen);
        list.append(el("option", { value: input.value }));
        this.check(name);
        this.writeCanvas(name);
        this.drawRun();
      } catch (err) {
        toastError("Could not upload the image", err);
      } finally {
        button.disabled = false;
        file.value = "";
      }
    });
    return el("div", { class: "sagemaker-param-upload" }, [button, file, list]);
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

  // The values as shown, or null while a field says what is wrong with its value (nothing else is run).
  values() {
    const inputs = {};
    for (const name of this.fields.keys()) {
      const [value] = this.check(name);
      if (value !== undefined) inputs[name] = value;
    }
    return this.invalid().length ? null : inputs;
  }

  // The fields whose message shows (the form's own check, or the server's reason since the last edit).
  invalid() {
    return [...this.fields].filter(([, field]) => !field.message.hidden).map(([name]) => name);
  }

  // Run is off while a run is starting or a field is invalid; the line under it says which fields.
  drawRun() {
    if (!this.run) return;
    const invalid = this.invalid();
    this.run.disabled = this.running || invalid.length > 0;
    this.blocked.hidden = invalid.length === 0;
    this.blocked.textContent = invalid.length
      ? `Run waits for valid values: ${invalid.map((name) => `${name} (${this.fields.get(name).message.textContent})`).join(", ")}`
      : "";
    this.run.title = this.blocked.textContent;
  }

  // ComfyUI's validation refused the run: each reason under the field of the parameter it concerns (by node id
  // and input name), the rest in the status line, and the refused nodes outlined on the canvas it came from.
  showNodeErrors(body) {
    const shown = new Set();
    const rest = [];
    for (const [key, reason] of nodeReasons(body.node_errors)) {
      const param = parameterOf(this.targets, key);
      if (param && this.fields.has(param)) {
        this.setMessage(param, reason);
        shown.add(param);
      } else {
        rest.push(`${body.node_errors[key.split("/")[0]]?.class_type ?? "a node"}: ${reason}`);
      }
    }
    if (shown.size === 0 && rest.length === 0) return false; // a refusal of the prompt as a whole: the caller says it
    if (this.isLoaded(this.name)) outlineNodes(app, Object.keys(body.node_errors));
    const said = body.error?.message ?? "ComfyUI refused the run";
    this.setStatus(rest.length ? `${said} (${rest.join("; ")})` : "", "refused");
    this.drawRun();
    return true;
  }

  // Where Run sends the run: follows the Prompt on AWS switch.
  drawWhere() {
    if (!this.where) return;
    this.wasShown ||= this.root.isConnected;
    const onAws = isPromptOnAws();
    this.where.dataset.target = onAws ? "endpoint" : "local";
    this.where.textContent = onAws
      ? "Runs on the template's endpoint (Prompt on AWS is on)."
      : "Runs on this ComfyUI (Prompt on AWS is off).";
  }

  setStatus(text, state = "") {
    this.status.hidden = !text;
    this.status.textContent = text || "";
    this.status.dataset.state = state;
  }

  showImages(outputs) {
    const images = outputImages(outputs, this.outputNodes);
    this.result.replaceChildren(
      ...images.map((image) =>
        el(
          "a",
          { href: viewUrl(image), target: "_blank", rel: "noopener", title: image.filename, "data-testid": "sagemaker-param-image" },
          el("img", { src: viewUrl(image), alt: image.filename }),
        ),
      ),
    );
    this.result.hidden = images.length === 0;
  }

  // The end of a run: its images, or why it did not end well.
  // A failed endpoint run is already a toast (executions.js announces this page's runs); a local one is not.
  finish(state, outputs, error, seconds, local) {
    if (state === "succeeded") {
      this.showImages(outputs);
      this.setStatus(`Done in ${formatDuration(seconds)}`, state);
    } else {
      this.setStatus(state === "cancelled" ? "Cancelled" : `Failed: ${error ?? "unknown error"}`, state);
      if (state === "failed" && local) toast("error", `Run of ${this.name} failed`, error ?? "unknown error");
    }
  }

  // On the endpoint: POST /templates/{name}/executions, then its record until it ends.
  async runOnEndpoint(name, inputs, follow, still) {
    const body = { inputs };
    if (follow && api.clientId) body.client_id = api.clientId;
    const answer = await call("POST", `/templates/${encodeURIComponent(name)}/executions`, body);
    executionCreated(answer.execution); // listed under Executions as this page's run
    if (!still()) return;
    this.setStatus(`Running on ${answer.execution.environment ?? "the endpoint"}…`, "running");
    let record = answer.execution;
    while (!FINAL.has(record.state)) {
      await sleep(POLL_MS);
      if (!still()) return;
      record = await call("GET", `/executions/${encodeURIComponent(answer.execution_id)}`);
    }
    if (!still()) return;
    const seconds = (Date.parse(record.finished_at) - Date.parse(record.started_at ?? record.created_at)) / 1000;
    this.finish(record.state, record.outputs, record.error?.message, Number.isFinite(seconds) ? seconds : null, false);
  }

  // On this ComfyUI: the filled prompt from /templates/{name}/prompt, queued with POST /prompt, then
  // its /history entry until it ends.
  async runHere(name, inputs, follow, still) {
    const { prompt, workflow } = await call("POST", `/templates/${encodeURIComponent(name)}/prompt`, { inputs });
    if (!still()) return;
    const clientId = follow && api.clientId ? api.clientId : PRIVATE_CLIENT;
    const started = Date.now();
    const res = await api.fetchApi("/prompt", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt, client_id: clientId, extra_data: { extra_pnginfo: { workflow } } }),
    });
    const queued = await res.json().catch(() => null);
    if (!res.ok || !queued?.prompt_id) {
      const refused = new Error(`ComfyUI did not queue it: ${promptRefusal(queued, res.status)}`);
      throw Object.assign(refused, { status: res.status, body: queued });
    }
    if (!still()) return;
    this.setStatus("Running on this ComfyUI…", "running");
    for (;;) {
      await sleep(POLL_MS);
      if (!still()) return;
      const history = await api.fetchApi(`/history/${encodeURIComponent(queued.prompt_id)}`).then((r) => r.json());
      const entry = history?.[queued.prompt_id];
      if (!entry || entry.status?.completed === undefined) continue;
      if (!still()) return;
      const ok = entry.status.status_str === "success";
      this.finish(ok ? "succeeded" : "failed", entry.outputs, ok ? null : historyError(entry), (Date.now() - started) / 1000, true);
      return;
    }
  }

  async submit() {
    const name = this.name;
    const ticket = ++this.runs;
    // Follow the run while this form shows it: not once another template (or another run) is shown,
    // nor once the sidebar is closed (its form goes with it).
    const still = () => name === this.name && ticket === this.runs && this.root.isConnected;
    this.readCanvas(); // edited on the canvas since: those values show, and run, as ComfyUI's Run would
    const inputs = this.values();
    if (!inputs) return this.drawRun(); // Run was off: nothing runs but what is shown, and that is not valid
    const onAws = isPromptOnAws();
    const follow = this.isLoaded(name);
    clearOutlines(app);
    this.running = true;
    this.drawRun();
    this.result.hidden = true;
    this.result.replaceChildren();
    this.setStatus("Starting…", "starting");
    try {
      if (onAws) await this.runOnEndpoint(name, inputs, follow, still);
      else await this.runHere(name, inputs, follow, still);
    } catch (err) {
      if (!still()) return;
      this.setStatus("");
      const refusal = refusalBody(err);
      if (err.status === 422) {
        const reasons = fieldReasons(err);
        const shown = Object.entries(reasons).filter(([param]) => this.fields.has(param));
        for (const [param, reason] of shown) this.setMessage(param, reason);
        if (shown.length === 0) toastError(`Could not run ${name}`, err);
      } else if (!(refusal && this.showNodeErrors(refusal))) {
        toastError(`Could not run ${name}`, err);
      }
    } finally {
      if (name === this.name) {
        this.running = false;
        this.drawRun();
      }
    }
  }
}
