// @ts-check
// The sidebar's "Models" section: ComfyUI's model files per folder (collapsible), with size and hash
// state; add one (upload from this computer, or download by URL as a task with a progress card); delete.
import { call, toast, toastError } from "./api.js";
import { openDialog } from "./dialog.js";
import { el, iconButton } from "./dom.js";
import { formatBytes, plural } from "./format.js";
import { modelsChanged } from "./model_combos.js";
import { openAddModel } from "./model_dialog.js";
import { LiveSet, Section } from "./section.js";
import { TaskBoard } from "./task_board.js";
import { onTask } from "./tasks.js";

/** @type {LiveSet<ModelsSection>} */
const sections = new LiveSet();
const openFolders = new Set(); // folders the user expanded, kept across refreshes and tab switches

// A name may hold "/" (a file in a subfolder): each segment is encoded, the slashes stay.
export function modelPath(folder, name) {
  return `/models/${encodeURIComponent(folder)}/${name.split("/").map(encodeURIComponent).join("/")}`;
}

export function hashLabel(sha256) {
  return sha256 ? `sha256 …${sha256.slice(-4)}` : "not hashed";
}

// Downloads, each followed once whichever section (or none) shows it.
const downloads = new TaskBoard({
  title: (entry) => `Downloading ${entry.name}`,
  finished(final) {
    if (final.state === "succeeded") {
      toast("success", "Model downloaded", final.target);
      openFolders.add(final.target.split("/")[0]); // show where it went
      modelsChanged();
    } else if (final.state === "cancelled") toast("info", "Download cancelled", final.target);
    else toast("error", `Could not download ${final.target}`, final.error?.message ?? "unknown error");
    for (const s of sections.all()) s.refresh();
  },
});

// A download started elsewhere (another browser, the API) shows up too.
onTask((task) => {
  if (task.kind === "model download" && task.state === "running") downloads.track(task, task.target);
  // A publish hashes the models it includes: their hash state here follows once it ends.
  if (task.kind === "publish" && task.state !== "running") for (const s of sections.all()) s.refresh();
});

class ModelsSection extends Section {
  constructor() {
    super({
      testid: "sagemaker-models",
      title: "Models",
      refresh: { title: "Refresh the list", testid: "sagemaker-models-refresh" },
      plus: { title: "Add a model", testid: "sagemaker-models-add" },
      failure: "Could not list models",
    });
    this.folders = null; // {folder: [files]} from the last list
    this.list = el("div", { class: "sagemaker-model-folders", "data-testid": "sagemaker-models-list" });
    this.root.append(this.slot, downloads.attach(this.root, "sagemaker-model-jobs"), this.list);
  }

  read() {
    return call("GET", "/models");
  }

  show(answer) {
    this.folders = answer.folders;
    this.render(answer.problems ?? []);
  }

  plus() {
    this.openAdd();
  }

  render(problems) {
    const names = Object.keys(this.folders).sort();
    const filled = names.filter((f) => this.folders[f].length > 0);
    const empty = names.filter((f) => this.folders[f].length === 0);
    this.list.replaceChildren(
      ...[
        ...filled.map((f) => this.folder(f, this.folders[f])),
        filled.length === 0
          ? el(
              "div",
              { class: "sagemaker-muted", "data-testid": "sagemaker-models-empty" },
              this.artist ? "No model files yet." : "No model files yet: + adds one.",
            )
          : null,
        empty.length
          ? el(
              "div",
              { class: "sagemaker-muted sagemaker-note", title: empty.join("\n"), "data-testid": "sagemaker-models-empty-folders" },
              `${plural(empty.length, "empty folder")} not shown`,
            )
          : null,
        problems.length
          ? el(
              "div",
              { class: "sagemaker-diff-warn sagemaker-note", title: problems.join("\n"), "data-testid": "sagemaker-models-problems" },
              `${plural(problems.length, "file")} could not be read`,
            )
          : null,
      ].filter((node) => node !== null),
    );
  }

  folder(name, files) {
    const total = files.reduce((sum, f) => sum + f.size, 0);
    const details = el(
      "details",
      {
        class: "sagemaker-collapsible sagemaker-model-folder",
        open: openFolders.has(name),
        "data-testid": "sagemaker-model-folder",
        "data-folder": name,
      },
      [
        el("summary", { title: `${plural(files.length, "file")}, ${formatBytes(total)}` }, [
          el("span", { class: "sagemaker-model-folder-name" }, name),
          el("span", { class: "sagemaker-muted", "data-testid": "sagemaker-model-folder-count" }, ` (${files.length})`),
        ]),
        el(
          "ul",
          { class: "sagemaker-model-list" },
          files.map((f) => this.row(f)),
        ),
      ],
    );
    details.addEventListener("toggle", () => (details.open ? openFolders.add(name) : openFolders.delete(name)));
    return details;
  }

  row(f) {
    return el("li", { class: "sagemaker-model", "data-testid": "sagemaker-model-row", "data-folder": f.folder, "data-model": f.name }, [
      el("div", { class: "sagemaker-model-line" }, [
        el("span", { class: "sagemaker-model-name", title: f.name }, f.name),
        this.artist
          ? null
          : iconButton("pi pi-trash", `Delete ${f.folder}/${f.name}`, "sagemaker-model-delete", () => this.confirmDelete(f)),
      ]),
      el("div", { class: "sagemaker-model-facts sagemaker-muted" }, [
        el("span", { title: `${f.size} bytes`, "data-testid": "sagemaker-model-size" }, formatBytes(f.size)),
        el(
          "span",
          { title: f.sha256 ? `sha256 ${f.sha256}` : "hashed when an environment includes it", "data-testid": "sagemaker-model-hash" },
          hashLabel(f.sha256),
        ),
      ]),
    ]);
  }

  confirmDelete(f) {
    openDialog(this.slot, {
      title: `Delete ${f.folder}/${f.name}?`,
      body: el(
        "div",
        { class: "sagemaker-muted" },
        `The file (${formatBytes(f.size)}) leaves this ComfyUI's disk; environments already published keep their copy.`,
      ),
      okLabel: "Delete",
      danger: true,
      testid: "sagemaker-model-delete-dialog",
      onOk: async () => {
        try {
          await call("DELETE", modelPath(f.folder, f.name));
        } catch (err) {
          toastError(`Could not delete ${f.folder}/${f.name}`, err);
          if (err.status === 404) this.refresh();
          throw err;
        }
        toast("success", "Model deleted", `${f.folder}/${f.name}`);
        modelsChanged();
        openFolders.add(f.folder); // keep the user where they were
        await this.refresh();
      },
    });
    this.slot.scrollIntoView({ block: "nearest" });
  }

  async openAdd() {
    if (!this.folders) await this.refresh();
    if (!this.folders) return; // the refresh said why
    openAddModel(this.slot, {
      folders: Object.keys(this.folders).sort(),
      onUploaded: (result) => {
        openFolders.add(result.folder);
        modelsChanged();
        this.refresh();
      },
      onDownload: (task) => downloads.track(task, task.target),
    });
    this.slot.scrollIntoView({ block: "nearest" });
  }
}

// The section's root element; its list loads at once.
export function mountModels() {
  return sections.add(new ModelsSection()).start();
}
