// Makes the /verify page work offline once it has loaded: registers the service worker
// (/dist/verify-sw.js) that keeps the page, its scripts and the verifier's chunks, for two
// scopes: the page (/verify) and its Web Worker's script (/dist/verify-worker.js), because
// Chromium gives a dedicated worker the service worker whose scope holds the worker's own URL,
// not its page's. The server allows these scopes with Service-Worker-Allowed. The page says so
// once both are active.

/** The scopes the service worker controls: the page, and the worker that verifies. */
const SCOPES = ['/verify', '/dist/verify-worker.js'];

/** Resolves once `registration` has an activated service worker. */
function activated(registration) {
  return new Promise((resolve) => {
    const check = () => {
      if (registration.active?.state === 'activated') {
        resolve();
        return true;
      }
      return false;
    };
    if (check()) return;
    const worker = registration.installing ?? registration.waiting ?? registration.active;
    worker?.addEventListener('statechange', check);
    registration.addEventListener('updatefound', () => registration.installing?.addEventListener('statechange', check));
  });
}

/** Registers the service worker and shows `note` once the page is kept for offline use. */
export async function offerOffline(note) {
  if (!('serviceWorker' in navigator)) return;
  try {
    const registrations = await Promise.all(SCOPES.map((scope) => navigator.serviceWorker.register('/dist/verify-sw.js', { scope })));
    await Promise.all(registrations.map(activated));
    if (!navigator.serviceWorker.controller) {
      await new Promise((resolve) => navigator.serviceWorker.addEventListener('controllerchange', resolve, { once: true }));
    }
    note.textContent = 'Ready to work offline: this page and its verifier are kept in this browser.';
  } catch (error) {
    note.textContent = `This page cannot be kept for offline use here: ${error.message}`;
  }
  note.hidden = false;
}
