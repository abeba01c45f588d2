// @ts-check
// What the Connect section shows without changing anything: the configuration that runs (with the keys
// environment variables set), and the results of Check.
import { envVariable } from "./connect_form.js";
import { el } from "./dom.js";

/** @type {Record<string, string>} */
// Check's statuses, then aws doctor's (connect_doctor.js): a skip is a check not made here, never a pass.
const ICONS = {
  ok: "pi-check-circle",
  warning: "pi-exclamation-triangle",
  failed: "pi-times-circle",
  pass: "pi-check-circle",
  skip: "pi-minus-circle",
  fail: "pi-times-circle",
};

function envBadge(key) {
  return el(
    "span",
    {
      class: "sagemaker-badge sagemaker-connect-env",
      title: `set by ${envVariable(key)}: environment variables win over config.json`,
      "data-testid": "sagemaker-connect-env",
    },
    `set by ${envVariable(key)}`,
  );
}

/** The configuration that runs, read-only: what a user needs to know, never a secret.
 * @param {Record<string, any>} cfg @param {Set<string>} fromEnv the keys environment variables set */
export function facts(cfg, fromEnv) {
  const fact = (keys, label, value, unset = false) =>
    el("div", { class: "sagemaker-connect-fact", "data-testid": "sagemaker-connect-fact", "data-key": keys[0] }, [
      el("span", { class: "sagemaker-label" }, label),
      el(
        "span",
        { class: `sagemaker-connect-fact-value${unset ? " sagemaker-muted" : ""}`, "data-testid": "sagemaker-connect-fact-value" },
        value,
      ),
      ...keys.filter((k) => fromEnv.has(k)).map(envBadge),
    ]);
  const s3 = cfg.store === "s3";
  const rows = [fact(["store"], "Store", s3 ? "S3" : "folder store on this machine")];
  if (s3) rows.push(fact(["s3_bucket", "s3_prefix"], "Bucket", `s3://${cfg.s3_bucket}/${cfg.s3_prefix || ""}`));
  const aws = [
    ["region", "Region", "boto3's default"],
    ["sagemaker_role_arn", "Execution role", "not set"],
    ["worker_image_uri", "Worker image", "not set"],
  ];
  for (const [key, label, fallback] of aws) {
    if (s3 || cfg[key]) rows.push(fact([key], label, cfg[key] || fallback, !cfg[key]));
  }
  rows.push(
    fact(["role"], "Role", cfg.role),
    fact(["display_name"], "Display name", cfg.display_name || "this machine's host name", !cfg.display_name),
    fact(["token"], "Token", cfg.token ? "set" : "not set"),
  );
  if (!s3 && cfg.store_path) rows[0].title = cfg.store_path;
  return el("div", { class: "sagemaker-connect-facts", "data-testid": "sagemaker-connect-effective" }, rows);
}

/** One result of Check: a prerequisite, its status, what was found and how to fix it. @param {any} r */
export function resultRow(r) {
  const status = ICONS[r.status] ? r.status : "failed";
  return el(
    "div",
    {
      class: `sagemaker-connect-result sagemaker-connect-${status}`,
      role: "listitem",
      "data-testid": "sagemaker-connect-result",
      "data-name": r.name,
      "data-status": status,
    },
    [
      el("div", { class: "sagemaker-connect-result-line" }, [
        el("i", { class: `pi ${ICONS[status]}`, "aria-hidden": "true" }),
        el("span", { class: "sagemaker-connect-result-name" }, r.name),
        el("span", { class: "sagemaker-connect-result-status", "data-testid": "sagemaker-connect-result-status" }, status),
      ]),
      el("div", { class: "sagemaker-connect-result-detail", "data-testid": "sagemaker-connect-result-detail" }, r.detail),
      r.fix
        ? el(
            "div",
            { class: "sagemaker-muted sagemaker-connect-result-detail", "data-testid": "sagemaker-connect-result-fix" },
            r.status === "ok" ? r.fix : `Fix: ${r.fix}`,
          )
        : null,
    ],
  );
}

/** @param {any[]} results */
export function summaryOf(results) {
  const failed = results.filter((r) => r.status === "failed").length;
  const warnings = results.filter((r) => r.status === "warning").length;
  if (!failed && !warnings) return "Every check passed.";
  return [failed && `${failed} failed`, warnings && `${warnings} ${warnings === 1 ? "warning" : "warnings"}`].filter(Boolean).join(", ");
}
