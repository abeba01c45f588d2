// @ts-check
// The "Add a model" dialog: upload a file from this computer (streamed, with a progress bar) or
// download one by URL on the server (a task: its progress card lives in the Models section).
import { api } from "../../../scripts/api.js";
import { call, getToken, SageMakerError, toast, toastError } from "./api.js";
import { openConnectButton } from "./connect.js";
import { field, openDialog } from "./dialog.js";
import { el, find } from "./dom.js";
import { formatBytes } from "./format.js";

const SHA256 = /^[0-9a-fA-F]{64}$/;
let lastFolder = null; // the folder picked last time: models tend to go to the same place

/**
 * PUT the File as the request body: the browser streams it from disk (never read into memory here).
 * XMLHttpRequest because fetch reports no upload progress. Resolves to {folder, name, size, sha256}.
 * @param {string} folder @param {string} name @param {File} file
 * @param {{sha256?: string, overwrite?: boolean, onProgress?: (done: number, total: number) => void,
 *   onXhr?: (xhr: XMLHttpRequest) => void}} [options]
 * @returns {Promise<any>}
 */
export function uploadModel(folder, name, file, { sha256 = "", overwrite = false, onProgress, onXhr } = {}) {
  return new Promise((resolve, reject) => {
    const query = new URLSearchParams();
    if (overwrite) query.set("overwrite", "true");
    if (sha256) query.set("sha256", sha256.toLowerCase());
    const path = `/sagemaker/models/${encodeURIComponent(folder)}/${encodeURIComponent(name)}${query.toString() ? `?${query}` : ""}`;
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", api.apiURL(path));
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    if (getToken()) xhr.setRequestHeader("X-SageMaker-Token", getToken());
    if (api.user) xhr.setRequestHeader("Comfy-User", api.user); // as api.fetchApi does
    xhr.upload.onprogress = (e) => onProgress?.(e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.onload = () => {
      let data = null;
      try {
        data = JSON.parse(xhr.responseText);
      } catch {
        data = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else {
        const err = data?.error ?? { code: "http_error", message: `${xhr.status} ${xhr.statusText}` };
        reject(new SageMakerError(xhr.status, err.code, err.message));
      }
    };
    xhr.onerror = () => reject(new SageMakerError(0, "network_error", "the upload failed: the connection was lost"));
    xhr.onabort = () => reject(new SageMakerError(0, "cancelled", "upload cancelled"));
    onXhr?.(xhr);
    xhr.send(file);
  });
}

// The last path segment of a URL, decoded: the name a download gets unless the user types one.
export function nameFromUrl(url) {
  try {
    const last = new URL(url).pathname.split("/").filter(Boolean).pop() ?? "";
    return decodeURIComponent(last);
  } catch {
    return "";
  }
}

function radio(group, value, label, checked) {
  const input = el("input", { type: "radio", name: group, value, checked, "data-testid": `sagemaker-model-source-${value}` });
  return { input, label: el("label", { class: "sagemaker-check" }, [input, label]) };
}

// openAddModel(slot, {folders, onUploaded(result), onDownload(task)})
export function openAddModel(slot, { folders, onUploaded, onDownload }) {
  const group = `sagemaker-model-source-${Math.random().toString(36).slice(2)}`;
  const fromFile = radio(group, "upload", "From this computer", true);
  const fromUrl = radio(group, "url", "From a URL", false);
  const file = el("input", { type: "file", class: "sagemaker-input sagemaker-model-file", "data-testid": "sagemaker-model-file" });
  const url = el("input", {
    type: "url",
    class: "sagemaker-input",
    placeholder: "https://…/model.safetensors",
    autocomplete: "off",
    spellcheck: "false",
    "data-testid": "sagemaker-model-url",
  });
  const preferred = lastFolder && folders.includes(lastFolder) ? lastFolder : folders.includes("checkpoints") ? "checkpoints" : folders[0];
  const folder = el(
    "select",
    { class: "sagemaker-input", "data-testid": "sagemaker-model-folder" },
    folders.map((f) => el("option", { value: f, selected: f === preferred }, f)),
  );
  const name = el("input", {
    type: "text",
    class: "sagemaker-input",
    autocomplete: "off",
    spellcheck: "false",
    "data-testid": "sagemaker-model-name",
  });
  const sha256 = el("input", {
    type: "text",
    class: "sagemaker-input",
    placeholder: "optional: 64 hex digits, checked",
    autocomplete: "off",
    spellcheck: "false",
    "data-testid": "sagemaker-model-sha256",
  });
  const overwrite = el("input", { type: "checkbox", "data-testid": "sagemaker-model-overwrite" });
  const message = el("div", { class: "sagemaker-error", "data-testid": "sagemaker-model-sha256-error", hidden: true });
  const fill = el("div", { class: "sagemaker-progress-fill" });
  const bar = el(
    "div",
    {
      class: "sagemaker-progress",
      role: "progressbar",
      "aria-valuemin": "0",
      "aria-valuemax": "100",
      "aria-valuenow": "0",
      "data-testid": "sagemaker-model-progress",
    },
    fill,
  );
  const progressText = el("div", { class: "sagemaker-muted sagemaker-note", "data-testid": "sagemaker-model-progress-text" });
  const progress = el("div", { class: "sagemaker-subfields", hidden: true }, [bar, progressText]);
  const fileField = field("File", file);
  const urlField = field("URL", url);
  const overwriteField = el("label", { class: "sagemaker-check" }, [overwrite, "Replace a file of the same name"]);
  const controls = [fromFile.input, fromUrl.input, file, url, folder, name, sha256, overwrite];
  let nameTyped = false; // the name follows the file or URL until the user types one
  let xhr = null;

  const dialog = openDialog(slot, {
    title: "Add a model",
    body: [
      el("div", { class: "sagemaker-inline sagemaker-model-sources" }, [fromFile.label, fromUrl.label]),
      fileField,
      urlField,
      field("Folder", folder),
      field("Name", name),
      field("SHA-256", sha256),
      message,
      overwriteField,
      progress,
    ],
    okLabel: "Upload",
    testid: "sagemaker-model-dialog",
    onOk: () => (fromUrl.input.checked ? download() : upload()),
  });
  const ok = find(dialog.box, '[data-testid="sagemaker-dialog-ok"]');
  // Cancel (or Escape) while uploading stops the upload; the file never gets its final name.
  find(dialog.box, '[data-testid="sagemaker-dialog-cancel"]').addEventListener("click", () => xhr?.abort());
  dialog.box.addEventListener("keydown", (event) => event.key === "Escape" && xhr?.abort());

  const validate = () => {
    const byUrl = fromUrl.input.checked;
    fileField.hidden = byUrl;
    urlField.hidden = !byUrl;
    ok.textContent = byUrl ? "Download" : "Upload";
    if (!nameTyped) name.value = byUrl ? nameFromUrl(url.value) : (file.files?.[0]?.name ?? "");
    const badHash = sha256.value.trim() !== "" && !SHA256.test(sha256.value.trim());
    message.hidden = !badHash;
    message.textContent = badHash ? "SHA-256: 64 hex digits, or empty" : "";
    const source = byUrl ? url.value.trim() !== "" : (file.files?.length ?? 0) > 0;
    dialog.setOkEnabled(source && name.value.trim() !== "" && folder.value !== "" && !badHash);
  };
  for (const c of [fromFile.input, fromUrl.input, file, folder]) c.addEventListener("change", validate);
  for (const c of [url, sha256]) c.addEventListener("input", validate);
  name.addEventListener("input", () => {
    nameTyped = name.value !== "";
    validate();
  });
  validate();

  const setBusy = (busy) => {
    for (const c of controls) c.disabled = busy;
  };
  const showProgress = (done, total) => {
    const percent = total > 0 ? Math.min(100, Math.round((done / total) * 100)) : 0;
    fill.style.width = `${percent}%`;
    bar.setAttribute("aria-valuenow", String(percent));
    progressText.textContent = done >= total ? `${formatBytes(total)} sent, checking…` : `${formatBytes(done)} of ${formatBytes(total)}`;
  };

  async function upload() {
    const chosen = /** @type {File} */ (file.files?.[0]); // Upload is enabled once a file is chosen
    const target = { folder: folder.value, name: name.value.trim() };
    lastFolder = target.folder;
    setBusy(true);
    progress.hidden = false;
    showProgress(0, chosen.size);
    try {
      const result = await uploadModel(target.folder, target.name, chosen, {
        sha256: sha256.value.trim(),
        overwrite: overwrite.checked,
        onProgress: showProgress,
        onXhr: (x) => (xhr = x),
      });
      toast("success", "Model uploaded", `${result.folder}/${result.name} (${formatBytes(result.size)})`);
      onUploaded(result);
    } catch (err) {
      if (err.code === "cancelled") toast("info", "Upload cancelled", `${target.folder}/${target.name}`);
      else toastError(`Could not upload ${target.folder}/${target.name}`, err);
      throw err;
    } finally {
      xhr = null;
      setBusy(false);
      progress.hidden = true;
    }
  }

  async function download() {
    const body = { folder: folder.value, name: name.value.trim(), url: url.value.trim(), overwrite: overwrite.checked };
    if (sha256.value.trim()) body.sha256 = sha256.value.trim().toLowerCase();
    lastFolder = body.folder;
    try {
      const { task } = await call("POST", "/models/download", body);
      onDownload(task);
    } catch (err) {
      // Refused for the host's address: the dialog names the Connect setting that allows it, and opens it.
      if (err?.body?.error?.details?.setting) err.action = openConnectButton(() => dialog.close());
      else toastError(`Could not download ${body.folder}/${body.name}`, err);
      throw err;
    }
  }

  return dialog;
}
