// The /verify page's words (web/debug-me/verify/text.js): the same as `kanava verify` prints,
// and text from a file made harmless.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { harmless, keyText, refusal, sizeText, verdictText, MAX_FILE_BYTES } from '../debug-me/verify/text.js';

test('a verified verdict reads as kanava verify prints it, singular and plural', () => {
  assert.equal(
    verdictText({ verified: true, lines: 3, activities: 2, controls: 1 }),
    'verified: 3 lines, 2 activities, 1 control message; all signatures and hashes are valid',
  );
  assert.equal(
    verdictText({ verified: true, lines: 1, activities: 1, controls: 0 }),
    'verified: 1 line, 1 activity, 0 control messages; all signatures and hashes are valid',
  );
  assert.equal(verdictText({ verified: false, line: 7, error: 'line 7: invalid hash chain' }), 'line 7: invalid hash chain');
});

test('keys read as kanava verify lists them, with the user decisions of developer keys', () => {
  const user = { role: 'user', key: 'ab', line: 1, gpg_signer: null, accepted_at: [], rejected_at: [] };
  assert.equal(keyText(user), 'user key ab (line 1)');
  const developer = { ...user, role: 'developer', line: 2, gpg_signer: 'Dev <dev@example.org>' };
  assert.equal(keyText(developer), 'developer key ab (line 2, GnuPG: Dev <dev@example.org>); no decision in the log');
  assert.equal(keyText({ ...developer, accepted_at: [3, 9] }), 'developer key ab (line 2, GnuPG: Dev <dev@example.org>); accepted by the user at line 3, 9');
  assert.equal(keyText({ ...developer, gpg_signer: null, rejected_at: [4] }), 'developer key ab (line 2); rejected by the user at line 4');
  assert.equal(keyText({ ...developer, gpg_signer: null, accepted_at: [3], rejected_at: [4] }), 'developer key ab (line 2); accepted at line 3, rejected at line 4');
});

test('control and reordering characters are shown, never obeyed', () => {
  assert.equal(harmless('a\u001b[31mb\u0000\u007f'), 'a^[[31mb^@^?');
  assert.equal(harmless('x\u202egol.exe\u0085\nnext\tline'), 'x\ufffdgol.exe\ufffd next line');
  assert.equal(harmless('plain <b>text</b> ünïcode'), 'plain <b>text</b> ünïcode');
});

test('files over the limit are refused with their size, the limit and what to do', () => {
  assert.equal(refusal(MAX_FILE_BYTES), null);
  assert.equal(
    refusal(65 * 1024 * 1024),
    'refused: the file is 65 MiB, more than the 64 MiB this page verifies (run `kanava verify` on it)',
  );
  assert.equal(sizeText(1), '1 byte');
  assert.equal(sizeText(1536), '1.5 KiB');
});
