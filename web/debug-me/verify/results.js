// One file's result section on the /verify page: its name, a progress bar while it is being
// verified, then its verdict (role="status", so that it is announced), its keys, its warnings
// and the drawing of its chain. Everything from the file is inserted as text, made harmless.

import { drawChain } from './chain.js';
import { harmless, keyText, sizeText, verdictText } from './text.js';

let sections = 0;

/** The list of `items` (strings) under a heading, or nothing when there are none. */
function list(heading, items, className) {
  const fragment = document.createDocumentFragment();
  if (!items.length) return fragment;
  const title = document.createElement('h3');
  title.textContent = heading;
  const list = document.createElement('ul');
  list.className = className;
  for (const text of items) {
    const item = document.createElement('li');
    item.textContent = harmless(text);
    list.append(item);
  }
  fragment.append(title, list);
  return fragment;
}

/** A file's section while its verification runs; `show` fills it with the verdict. */
export class FileResult {
  /** @param {File} file */
  constructor(file) {
    sections += 1;
    this.element = document.createElement('article');
    this.element.className = 'result pending';
    const heading = document.createElement('h2');
    heading.id = `result-${sections}`;
    heading.textContent = harmless(file.name);
    this.element.setAttribute('aria-labelledby', heading.id);
    const size = document.createElement('p');
    size.className = 'size';
    size.textContent = sizeText(file.size);
    this.status = document.createElement('p');
    this.status.className = 'verdict';
    this.status.setAttribute('role', 'status');
    this.status.textContent = 'verifying…';
    this.progress = document.createElement('progress');
    this.progress.setAttribute('aria-label', `Progress of ${harmless(file.name)}`);
    this.element.append(heading, size, this.status, this.progress);
  }

  /** Moves the progress bar: `done` of `total` lines read. */
  advance(done, total) {
    this.progress.max = total;
    this.progress.value = done;
  }

  /** Says the file's `lines` lines are now being verified (a bar without an end: the verifier
   *  reports no progress of its own). */
  verifying(lines) {
    this.progress.removeAttribute('value');
    this.status.textContent = `verifying ${lines === 1 ? '1 line' : `${lines} lines`}…`;
  }

  /** Shows the verdict (as `kanava verify --json` gives it) and the chain's marks. */
  show(verdict, marks) {
    this.progress.remove();
    this.element.classList.remove('pending');
    this.element.classList.add(verdict.verified ? 'verified' : 'failed');
    this.status.textContent = harmless(verdictText(verdict));
    if (verdict.verified) {
      this.element.append(
        list('Keys', verdict.keys.map(keyText), 'keys'),
        list('Warnings', verdict.warnings.map((w) => `warning: ${w}`), 'warnings'),
      );
    }
    if (marks.length) this.element.append(drawChain(marks, verdict.verified ? null : verdict.line));
  }
}
