// @ts-check
// Tasks of one kind (environment publishes, model downloads) as progress cards in every open section of
// that kind. Each task is followed once, whichever section (or none) shows it; a finished task's card goes
// by itself after a while when it succeeded, and waits for Dismiss otherwise.
import { el } from "./dom.js";
import { LiveSet } from "./section.js";
import { followTask, taskCard } from "./tasks.js";

const SUCCESS_CARD_MS = 10_000;

/** @typedef {{task: any, name: string}} Entry a task as last heard, and the name its card says */
/** @typedef {ReturnType<typeof taskCard>} Card */
/** @typedef {{root: HTMLElement, box: HTMLElement, cards: Map<string, Card>}} Holder a section's cards */

export class TaskBoard {
  #holders = /** @type {LiveSet<Holder>} */ (new LiveSet());

  /**
   * @param {object} options
   * @param {(entry: Entry) => string} options.title the card's title
   * @param {(task: any, entry: Entry) => void} options.finished after the task ended (succeeded, failed or cancelled)
   */
  constructor({ title, finished }) {
    this.title = title;
    this.finished = finished;
    /** Running tasks, and finished ones not dismissed yet. @type {Map<string, Entry>} */
    this.entries = new Map();
  }

  /**
   * The box of cards of a section (`root`): it shows the board's tasks, now and to come.
   * @param {HTMLElement} root @param {string} testid
   */
  attach(root, testid) {
    const holder = { root, box: el("div", { class: "sagemaker-jobs", "data-testid": testid }), cards: new Map() };
    this.#holders.add(holder);
    for (const id of this.entries.keys()) this.#show(holder, id);
    return holder.box;
  }

  /**
   * Follows `task` once; a second call only renames its card (an event may know less than the caller did).
   * @param {any} task @param {string} name
   */
  track(task, name) {
    const known = this.entries.get(task.id);
    if (known) {
      known.name = name;
      for (const h of this.#holders.all()) h.cards.get(task.id)?.setTitle(this.title(known));
      return;
    }
    const entry = { task, name };
    this.entries.set(task.id, entry);
    for (const h of this.#holders.all()) this.#show(h, task.id);
    followTask(task, (next) => {
      if (!this.entries.has(task.id)) return;
      entry.task = next;
      for (const h of this.#holders.all()) h.cards.get(task.id)?.update(next);
    }).then((final) => {
      this.finished(final, entry);
      if (final.state === "succeeded") setTimeout(() => this.dismiss(task.id), SUCCESS_CARD_MS);
    });
  }

  /** @param {string} id */
  dismiss(id) {
    this.entries.delete(id);
    for (const h of this.#holders.all()) {
      h.cards.get(id)?.root.remove();
      h.cards.delete(id);
    }
  }

  /** @param {Holder} holder @param {string} id */
  #show(holder, id) {
    const entry = this.entries.get(id);
    if (!entry || holder.cards.has(id)) return;
    const card = taskCard(entry.task, this.title(entry), () => this.dismiss(id));
    holder.cards.set(id, card);
    holder.box.append(card.root);
  }
}
