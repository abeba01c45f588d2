// @ts-check
// The Connect panel's form: one field per key the server lets the panel change (GET /sagemaker/connect
// `editable`), filled from the configuration that runs. A key an environment variable sets is shown fixed:
// the variable wins over config.json. changes() holds only what the user changed (null removes the key
// from config.json, i.e. back to its default); values() holds every field, for replacing a broken file.
// The server checks every value (core/config.py) and its refusal is shown in its words.
import { field } from "./dialog.js";
import { el } from "./dom.js";

export const ENV_PREFIX = "COMFYUI_SAGEMAKER_";

// group: "s3" shows only with store s3; "more" sits in "This ComfyUI" (collapsed).
const FIELDS = [
  {
    key: "store",
    label: "Store",
    kind: "select",
    options: [
      ["folder", "folder on this machine"],
      ["s3", "S3 bucket (and SageMaker endpoints)"],
    ],
  },
  { key: "s3_bucket", label: "Bucket", group: "s3", placeholder: "my-comfy-store" },
  { key: "s3_prefix", label: "Prefix", group: "s3", placeholder: "studio (empty: the bucket's root)" },
  { key: "region", label: "Region", group: "s3", placeholder: "us-east-1 (empty: boto3's default)" },
  { key: "sagemaker_role_arn", label: "Execution role ARN", group: "s3", placeholder: "arn:aws:iam::<account>:role/<name>" },
  {
    key: "worker_image_uri",
    label: "Worker image URI",
    group: "s3",
    placeholder: "<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>",
  },
  { key: "max_instances", label: "Max instances per endpoint", kind: "number", group: "s3", fallback: 4 },
  {
    key: "s3_sse",
    label: "Server-side encryption",
    kind: "select",
    group: "s3",
    options: [
      ["", "the bucket's default"],
      ["AES256", "AES256"],
      ["aws:kms", "aws:kms (KMS key)"],
    ],
  },
  { key: "s3_kms_key_id", label: "KMS key", group: "s3", placeholder: "key id or ARN" },
  { key: "s3_max_concurrency", label: "Parallel parts per transfer", kind: "number", group: "s3", fallback: 10 },
  {
    key: "role",
    label: "Role",
    kind: "select",
    group: "more",
    options: [
      ["designer", "designer: publish, deploy, delete"],
      ["artist", "artist: read and run"],
    ],
  },
  { key: "display_name", label: "Display name", group: "more", placeholder: "this machine's host name" },
  { key: "execution_retention_days", label: "Keep execution records (days)", kind: "number", group: "more", fallback: 30 },
  { key: "token", label: "Token", kind: "password", group: "more" },
  { key: "share_host", label: "Share endpoints at (this machine's address)", group: "more", placeholder: "192.168.1.20" },
  { key: "allowed_hosts", label: "Allowed Host names", kind: "list", group: "more", placeholder: "comfy.example.com, 10.0.0.5" },
  { key: "download_allowed_hosts", label: "Model downloads may also reach", kind: "list", group: "more", placeholder: "models.lan:8080" },
  { key: "webhook_allowed_hosts", label: "Webhooks may also reach", kind: "list", group: "more", placeholder: "hooks.lan:9000" },
  { key: "webhook_retry_seconds", label: "Retry a webhook for (seconds)", kind: "number", group: "more", fallback: 900 },
  { key: "webhook_timeout_seconds", label: "One webhook attempt may take (seconds)", kind: "number", group: "more", fallback: 10 },
];

export const testidOf = (key) => `sagemaker-connect-${key.replaceAll("_", "-")}`;
export const envVariable = (key) => ENV_PREFIX + key.toUpperCase();

const hosts = (text) => text.split(/[\s,]+/).filter(Boolean);

// A key the server lets the panel change that this table does not know (a newer server): a plain field.
function inferred(key, value) {
  const kind = Array.isArray(value) ? "list" : typeof value === "number" ? "number" : "text";
  const label = key.replaceAll("_", " ");
  return { key, label: label[0].toUpperCase() + label.slice(1), kind, group: "more" };
}

// What the field shows for the running value.
function shown(spec, value) {
  if (spec.kind === "list") return (value ?? []).join(", ");
  if (spec.kind === "number") return String(value ?? spec.fallback ?? "");
  if (spec.kind === "select") return value ?? spec.options[0][0];
  if (spec.kind === "password") return "";
  return value ?? "";
}

function control(spec, value, disabled) {
  const common = { class: "sagemaker-input", disabled, "data-testid": testidOf(spec.key), "aria-label": spec.label };
  if (spec.kind === "select") {
    return el(
      "select",
      common,
      spec.options.map(([v, label]) => el("option", { value: v, selected: v === value }, label)),
    );
  }
  const type = { number: "number", password: "password" }[spec.kind] ?? "text";
  return el("input", {
    ...common,
    type,
    value,
    placeholder: spec.placeholder,
    min: spec.kind === "number" ? "1" : undefined,
    step: spec.kind === "number" ? "1" : undefined,
    autocomplete: type === "password" ? "new-password" : "off",
    spellcheck: "false",
  });
}

// connectForm(effective or null, fromEnvironment: Set, editable: [keys], onChange) ->
// {root, store(), changes(), values()}
export function connectForm(effective, fromEnvironment, editable, onChange) {
  const cfg = effective ?? {};
  const fields = new Map(); // key -> {spec, input, initial, row}
  const rows = { main: [], s3: [], more: [] };
  const known = new Set(FIELDS.map((f) => f.key));
  const specs = [
    ...FIELDS.filter((f) => editable.includes(f.key)),
    ...editable.filter((key) => !known.has(key)).map((key) => inferred(key, cfg[key])),
  ];
  for (const spec of specs) {
    const fixed = fromEnvironment.has(spec.key);
    const initial = shown(spec, cfg[spec.key]);
    const input = control(spec, initial, fixed);
    /** @type {HTMLElement[]} */
    const parts = [field(spec.label, input)];
    if (fixed) {
      parts.push(
        el(
          "div",
          { class: "sagemaker-muted sagemaker-note", "data-testid": "sagemaker-connect-env-note", "data-key": spec.key },
          `set by ${envVariable(spec.key)}: it wins over config.json`,
        ),
      );
    }
    fields.set(spec.key, { spec, input, initial, fixed });
    const row = el("div", { class: "sagemaker-connect-field", "data-key": spec.key }, parts);
    fields.get(spec.key).row = row;
    rows[spec.group ?? "main"].push(row);
  }

  // The token: write-only. Empty keeps it; "clear" removes it.
  const token = fields.get("token");
  let clear = null;
  if (token && !token.fixed) {
    token.input.placeholder = cfg.token ? "set: type a new one to change it" : "not set";
    clear = el("input", { type: "checkbox", "data-testid": "sagemaker-connect-token-clear" });
    if (cfg.token) token.row.append(el("label", { class: "sagemaker-check sagemaker-note" }, [clear, "clear the token"]));
    token.row.append(
      el(
        "div",
        { class: "sagemaker-muted sagemaker-note" },
        "Needed in every request once set; this browser keeps the one typed here. Never shown again.",
      ),
    );
  }

  const s3 = el("div", { class: "sagemaker-subfields", "data-testid": "sagemaker-connect-s3" }, rows.s3);
  const more = el("details", { class: "sagemaker-collapsible sagemaker-connect-more", "data-testid": "sagemaker-connect-more" }, [
    el("summary", { "data-testid": "sagemaker-connect-more-toggle" }, "This ComfyUI: role, name, token, hosts"),
    el("div", { class: "sagemaker-subfields" }, rows.more),
  ]);
  const root = el("div", { class: "sagemaker-connect-form", "data-testid": "sagemaker-connect-form" }, [...rows.main, s3, more]);
  // Keys typed here are ours: ComfyUI's canvas shortcuts must not see them.
  root.addEventListener("keydown", (event) => event.stopPropagation());

  const value = (key) => fields.get(key)?.input.value ?? "";
  const sync = () => {
    s3.hidden = value("store") !== "s3";
    const kms = fields.get("s3_kms_key_id");
    if (kms) kms.row.hidden = value("s3_sse") !== "aws:kms" && !kms.initial;
    if (token && clear) token.input.disabled = clear.checked;
  };
  for (const element of [...[...fields.values()].map((f) => f.input), clear].filter(Boolean)) {
    element.addEventListener("input", () => {
      sync();
      onChange?.();
    });
    element.addEventListener("change", () => {
      sync();
      onChange?.();
    });
  }
  sync();

  // A field's value to send: numbers as numbers (text the server then refuses in its words), lists as lists.
  const parse = (spec, raw) => {
    const text = raw.trim();
    if (spec.kind === "list") return hosts(text);
    if (spec.kind === "number") return /^\d+$/.test(text) ? Number(text) : text;
    return text;
  };
  const parsed = (f) => parse(f.spec, f.input.value);
  const empty = (v) => v === "" || (Array.isArray(v) && v.length === 0);

  return {
    root,
    store: () => value("store"),
    changes() {
      const out = {};
      for (const [key, f] of fields) {
        if (f.fixed) continue;
        if (key === "token") {
          if (clear?.checked) out.token = null;
          else if (f.input.value) out.token = f.input.value;
          continue;
        }
        const now = parsed(f);
        if (JSON.stringify(now) === JSON.stringify(parse(f.spec, f.initial))) continue;
        out[key] = empty(now) ? null : now;
      }
      return out;
    },
    values() {
      const out = {};
      for (const [key, f] of fields) {
        if (f.fixed || (key === "token" && clear?.checked)) continue;
        const now = key === "token" ? f.input.value : parsed(f);
        if (!empty(now)) out[key] = now;
      }
      return out;
    },
  };
}
