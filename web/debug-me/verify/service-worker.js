// The /verify page's service worker (served as /dist/verify-sw.js, scope /verify): keeps the
// page, its scripts, its style and every chunk the verifier may load (openpgp.js included, for a
// log with a GnuPG signature) so that the page loads and verifies with the network down. Online,
// the network is asked first, so a new release is seen at once; the cache answers only when the
// network cannot. build.mjs fills in VERIFY_FILES (the paths) and VERIFY_BUILD (a hash of their
// content: a new release is a new worker, which replaces the old cache).

/* global VERIFY_FILES, VERIFY_BUILD */
const CACHE_PREFIX = 'kanava-verify-';
const CACHE = `${CACHE_PREFIX}${VERIFY_BUILD}`;
const FILES = new Set(VERIFY_FILES);

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches.open(CACHE)
      .then((cache) => cache.addAll([...FILES]))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith(CACHE_PREFIX) && name !== CACHE) await caches.delete(name);
    }
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== self.location.origin) return;
  const path = url.pathname === '/verify/' ? '/verify' : url.pathname;
  if (!FILES.has(path)) return;
  event.respondWith(
    fetch(event.request).catch(async () => (await caches.match(path, { cacheName: CACHE })) ?? Response.error()),
  );
});
