// Builds the debug-me pages' bundles in web/dist/ from web/debug-me/ and the pinned npm packages
// (xterm.js, openpgp.js): `npm run build --prefix web`. The output is committed and embedded in
// the binary; CI rebuilds it and fails when it differs from what is committed. esbuild's output
// depends only on its inputs, so the same lockfile gives the same bytes.
import { rmSync } from 'node:fs';
import { build } from 'esbuild';

const outdir = new URL('./dist/', import.meta.url).pathname;
rmSync(outdir, { recursive: true, force: true });

await build({
  absWorkingDir: new URL('.', import.meta.url).pathname,
  entryPoints: {
    watch: 'debug-me/watch.js',
    verify: 'debug-me/verify-page.js',
    'verify-worker': 'debug-me/verify-worker.js',
  },
  outdir,
  bundle: true,
  // ES modules with shared chunks: a dynamic import() (openpgp.js, loaded only for a GnuPG
  // signature) becomes a chunk of its own that the page fetches when it needs it.
  format: 'esm',
  splitting: true,
  chunkNames: 'chunk-[name]-[hash]',
  minify: true,
  target: ['chrome110', 'firefox115', 'safari16'],
  // Licence texts of the bundled packages stay beside the code, in a file of their own.
  legalComments: 'linked',
  charset: 'utf8',
  logLevel: 'warning',
});
