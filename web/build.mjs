// Builds the debug-me pages' bundles in web/dist/ from web/debug-me/ and the pinned npm packages
// (xterm.js, openpgp.js): `npm run build --prefix web`. The output is committed and embedded in
// the binary; CI rebuilds it and fails when it differs from what is committed. esbuild's output
// depends only on its inputs, so the same lockfile gives the same bytes.
import { createHash } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { build } from 'esbuild';

const web = new URL('.', import.meta.url).pathname;
const outdir = join(web, 'dist');
rmSync(outdir, { recursive: true, force: true });

const common = {
  absWorkingDir: web,
  outdir,
  bundle: true,
  minify: true,
  target: ['chrome110', 'firefox115', 'safari16'],
  // Licence texts of the bundled packages stay beside the code, in a file of their own.
  legalComments: 'linked',
  charset: 'utf8',
  logLevel: 'warning',
};

const pages = await build({
  ...common,
  entryPoints: {
    watch: 'debug-me/watch.js',
    verify: 'debug-me/verify-page.js',
    'verify-worker': 'debug-me/verify-worker.js',
  },
  // ES modules with shared chunks: a dynamic import() (openpgp.js, loaded only for a GnuPG
  // signature) becomes a chunk of its own that the page fetches when it needs it.
  format: 'esm',
  splitting: true,
  chunkNames: '[name]-[hash]',
  metafile: true,
});

// What /verify needs offline: the page, and every file its two entries load, now or later.
const outputs = pages.metafile.outputs;
const needed = new Set();
function need(output) {
  if (needed.has(output) || !outputs[output]) return;
  needed.add(output);
  for (const imported of outputs[output].imports) need(imported.path);
  if (outputs[output].cssBundle) need(outputs[output].cssBundle);
}
need('dist/verify.js');
need('dist/verify-worker.js');
const files = [...needed].sort();
const hash = createHash('sha256');
for (const file of files) hash.update(file).update(readFileSync(join(web, file)));
const paths = ['/verify', ...files.map((file) => `/${relative(web, join(web, file))}`)];

// The service worker, told which files to keep and under which build.
await build({
  ...common,
  entryPoints: { 'verify-sw': 'debug-me/verify/service-worker.js' },
  format: 'iife',
  define: {
    VERIFY_FILES: JSON.stringify(paths),
    VERIFY_BUILD: JSON.stringify(hash.digest('hex').slice(0, 16)),
  },
});
