// @ts-check
// Jobs of one kind (environment publishes, model downloads) as progress cards in every open section of
// that kind. Each job is followed once, whichever section (or none) shows it; a finished job's card goes
// by itself after a while when it succeeded, and waits for Dismiss otherwise.
import { el } from "./dom.js";
import { followJob, jobCard } from "./jobs.js";
import { LiveSet } from "./section.js";

const SUCCESS_CARD_MS = 10_000;

/** @typedef {{job: any, name: string}} Entry a job as last heard, and the name its card says */
/** @typedef {ReturnType<typeof jobCard>} Card */
/** @typedef {{root: HTMLElement, box: HTMLElement, cards: Map<string, Card>}} Holder a section's cards */

export class JobBoard {
  #holders = /** @type {LiveSet<Holder>} */ (new LiveSet());

  /**
   * @param {object} options
   * @param {(entry: Entry) => string} options.title the card's title
   * @param {(job: any, entry: Entry) => void} options.finished after the job ended (succeeded, failed or cancelled)
   */
  constructor({ title, finished }) {
    this.title = title;
    this.finished = finished;
    /** Running jobs, and finished ones not dismissed yet. @type {Map<string, Entry>} */
    this.entries = new Map();
  }

  /**
   * The box of cards of a section (`root`): it shows the board's jobs, now and to come.
   * @param {HTMLElement} root @param {string} testid
   */
  attach(root, testid) {
    const holder = { root, box: el("div", { class: "sagemaker-jobs", "data-testid": testid }), cards: new Map() };
    this.#holders.add(holder);
    for (const id of this.entries.keys()) this.#show(holder, id);
    return holder.box;
  }

  /**
   * Follows `job` once; a second call only renames its card (an event may know less than the caller did).
   * @param {any} job @param {string} name
   */
  track(job, name) {
    const known = this.entries.get(job.id);
    if (known) {
      known.name = name;
      for (const h of this.#holders.all()) h.cards.get(job.id)?.setTitle(this.title(known));
      return;
    }
    const entry = { job, name };
    this.entries.set(job.id, entry);
    for (const h of this.#holders.all()) this.#show(h, job.id);
    followJob(job, (next) => {
      if (!this.entries.has(job.id)) return;
      entry.job = next;
      for (const h of this.#holders.all()) h.cards.get(job.id)?.update(next);
    }).then((final) => {
      this.finished(final, entry);
      if (final.state === "succeeded") setTimeout(() => this.dismiss(job.id), SUCCESS_CARD_MS);
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
    const card = jobCard(entry.job, this.title(entry), () => this.dismiss(id));
    holder.cards.set(id, card);
    holder.box.append(card.root);
  }
}
