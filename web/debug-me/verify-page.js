// The /verify page: log files chosen in the "Log files" input or dropped on the drop zone are
// verified in a Web Worker by the browser's own verifier; each gets a result section with its
// verdict, keys, warnings and chain drawing. Nothing is uploaded: the files go only to the
// worker.

import './verify/verify.css';
import { offerOffline } from './verify/offline.js';
import { FileResult } from './verify/results.js';

const worker = new Worker('/dist/verify-worker.js', { type: 'module' });
const results = document.getElementById('results');
const dropZone = document.getElementById('drop-zone');
const input = document.getElementById('files');

/** Sections waiting for their verdict, by the id sent with their file. */
const pending = new Map();
let nextId = 0;

worker.onmessage = ({ data }) => {
  const result = pending.get(data.id);
  if (!result) return;
  if (data.type === 'progress') {
    result.advance(data.done, data.total);
  } else if (data.type === 'verifying') {
    result.verifying(data.lines);
  } else {
    pending.delete(data.id);
    result.show(data.verdict, data.marks);
  }
};

/** Why the worker cannot verify (its script failed to load), once it is known. */
let broken = null;

// A worker that cannot start fails the files waiting for it, and those chosen later.
worker.addEventListener('error', (event) => {
  broken = `the page's verifier could not start: ${event.message || 'its script did not load'}`;
  for (const result of pending.values()) result.show({ verified: false, line: null, error: broken }, []);
  pending.clear();
});

/** Starts verifying `files`, newest results first. */
function verify(files) {
  const sections = [];
  for (const file of files) {
    nextId += 1;
    const result = new FileResult(file);
    sections.push(result.element);
    if (broken) {
      result.show({ verified: false, line: null, error: broken }, []);
      continue;
    }
    pending.set(nextId, result);
    worker.postMessage({ id: nextId, file });
  }
  results.prepend(...sections);
}

input.addEventListener('change', () => {
  verify(input.files);
  input.value = '';
});

// A file dropped anywhere on the page must not replace it; only the drop zone takes files.
for (const type of ['dragover', 'drop']) {
  document.addEventListener(type, (event) => event.preventDefault());
}
dropZone.addEventListener('dragenter', () => dropZone.classList.add('dragging'));
dropZone.addEventListener('dragover', (event) => {
  event.dataTransfer.dropEffect = 'copy';
  dropZone.classList.add('dragging');
});
dropZone.addEventListener('dragleave', (event) => {
  if (!dropZone.contains(event.relatedTarget)) dropZone.classList.remove('dragging');
});
dropZone.addEventListener('drop', (event) => {
  dropZone.classList.remove('dragging');
  const files = event.dataTransfer?.files;
  if (files?.length) verify(files);
});

offerOffline(document.getElementById('offline'));
